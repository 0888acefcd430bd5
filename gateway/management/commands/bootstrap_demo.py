"""Create a demo tenant and key on an empty installation, printing the key once (make run)."""

from django.core.management.base import BaseCommand

from tenants.models import Tenant
from tenants.services import api_key_create, tenant_create

DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Create the demo tenant and an API key for it if no tenant exists yet."

    def handle(self, *args: object, **options: object) -> None:
        if Tenant.objects.exists():
            self.stdout.write("Tenants exist already; no demo key created.")
            return
        tenant = tenant_create(slug=DEMO_SLUG, name="Demo tenant")
        issued = api_key_create(tenant=tenant, name="demo key")
        self.stdout.write("Created tenant 'demo'. Its API key (shown once, store it now):")
        self.stdout.write(issued.raw_key)
