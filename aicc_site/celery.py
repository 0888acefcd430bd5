"""The Celery app: broker is REDIS_URL; tasks are discovered in each app's tasks.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aicc_site.settings")

app = Celery("aicc")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
