"""One view that answers from the DataFrame the models module built."""

from django.http import JsonResponse

from memapp.models import FRAME


def table(request):
    head = FRAME.head(5)
    return JsonResponse({"rows": int(len(FRAME)), "head": head.to_dict(orient="records")})
