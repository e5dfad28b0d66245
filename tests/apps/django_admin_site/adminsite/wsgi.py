"""The WSGI callable evserve serves: `adminsite.wsgi:application`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")
application = get_wsgi_application()
