"""A Django view for the bench: settings made in code, no database, the middleware a new
project starts with that needs none.

    apps.django_view   # the WSGI application, when Django is installed
"""

import django
from django.conf import settings

DJANGO_BODY = b"Hello from Django!\n"

settings.configure(
    DEBUG=False,
    SECRET_KEY="evserve-bench-not-a-secret",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    USE_TZ=True,
    INSTALLED_APPS=["django.contrib.contenttypes"],
    DATABASES={},
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


def hello_view(request):
    """Routing, middleware, request and response objects around a short body."""
    return HttpResponse(DJANGO_BODY, content_type="text/plain")


urlpatterns = [path("django", hello_view)]

application = get_wsgi_application()
