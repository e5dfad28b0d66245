"""One view that answers from a pandas DataFrame built at import time."""

import pandas as pd
from django.http import JsonResponse

FRAME = pd.DataFrame({"n": range(1000), "square": [i * i for i in range(1000)]})


def table(request):
    head = FRAME.head(5)
    return JsonResponse({"rows": int(len(FRAME)), "head": head.to_dict(orient="records")})
