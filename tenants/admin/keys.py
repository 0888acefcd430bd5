"""API keys in the admin: fast with 100k keys, secrets shown once, rotate/revoke/extend actions.

The changelist is one query for the page (tenant joined, the active secret's hint as a
correlated subquery) plus the paginator's count; search is a name prefix or an exact key id,
both index lookups. A new raw key is rendered straight into the response of the request that
created it (never redirected, never put in messages or the session), with no-store caching.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_cache_control

from tenants import selectors, services
from tenants.admin.forms import KeyActionForm, ModelNamesField
from tenants.admin.scoping import TenantScopedAdmin, admin_actor, is_owner_of
from tenants.models import APIKey, APIKeySecret
from tenants.services import IssuedKey

_KEY_ID_RE = re.compile(r"^(?:aicc_)?(?P<key_id>[0-9a-z]{12})(?:_.*)?$")
_ISSUED_ATTR = "_aicc_issued_keys"
MAX_KEYS_PER_ACTION = 100
_EDITABLE = ("name", "allowed_models", "rpm_limit", "tpm_limit", "max_concurrency")


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> Any:
        now = timezone.now()
        live = queryset.filter(revoked_at__isnull=True)
        if self.value() == "active":
            return live.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        if self.value() == "expired":
            return live.filter(expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class APIKeyForm(forms.ModelForm):
    allowed_models = ModelNamesField()
    request: HttpRequest

    class Meta:
        model = APIKey
        fields = ("tenant", "name", *_EDITABLE[1:], "is_admin", "expires_at")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        tenant = data.get("tenant") or getattr(self.instance, "tenant", None)
        if tenant is None:
            return data
        try:
            services.validate_key_models(
                tenant=tenant, allowed_models=data.get("allowed_models", [])
            )
            if "expires_at" in self.changed_data:
                services.validate_expiry(expires_at=data.get("expires_at"), now=timezone.now())
        except ValidationError as error:
            raise ValidationError(error.messages) from None
        if data.get("is_admin") and not is_owner_of(self.request, tenant.pk):
            raise ValidationError("Only an owner may create a tenant-admin key.")
        return data


class SecretInline(admin.TabularInline):
    """Secrets by hint only; the digest is never shown."""

    model = APIKeySecret
    fields = ("hint", "status", "deprecated_until", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-id",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(APIKey)
class APIKeyAdmin(TenantScopedAdmin):
    form = APIKeyForm
    inlines = (SecretInline,)
    action_form = KeyActionForm
    actions = ("rotate_selected", "revoke_selected", "extend_expiry_selected")
    list_display = (
        "public_id", "name", "tenant", "active_hint", "state", "is_admin", "last_used_at",
        "expires_at", "created_at",
    )  # fmt: skip
    list_select_related = ("tenant",)
    list_per_page = 50
    show_full_result_count = False
    ordering = ("-id",)
    search_fields = ("name",)  # shows the box; get_search_results does the (indexed) work
    search_help_text = "Name prefix, or a key id (aicc_<id>)."

    def get_queryset(self, request: HttpRequest) -> QuerySet[APIKey]:
        return selectors.annotate_active_hint(super().get_queryset(request))

    def get_list_filter(self, request: HttpRequest) -> Any:
        base = (StateFilter, "is_admin")
        return (*base, "tenant") if request.user.is_superuser else base

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[APIKey], search_term: str
    ) -> tuple[QuerySet[APIKey], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(name__istartswith=term)
        if match := _KEY_ID_RE.match(term.lower()):
            condition |= Q(public_id=match["key_id"])
        return queryset.filter(condition), False

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kw: Any
    ) -> Any:
        form_class = super().get_form(request, obj, change=change, **kw)
        return type(form_class.__name__, (form_class,), {"request": request})

    def get_readonly_fields(self, request: HttpRequest, obj: APIKey | None = None) -> Any:
        if obj is None:
            return ()
        return ("public_id", "tenant", "is_admin", "active_hint", "state", "created_by",
                "created_at", "last_used_at", "revoked_at")  # fmt: skip

    @admin.display(description="active secret")
    def active_hint(self, api_key: APIKey) -> str:
        return getattr(api_key, "active_hint", None) or "—"

    @admin.display(description="state")
    def state(self, api_key: APIKey) -> str:
        return api_key.state(timezone.now())

    def save_model(self, request: HttpRequest, obj: APIKey, form: Any, change: bool) -> None:
        data, actor = form.cleaned_data, admin_actor(request)
        if change:
            # `obj` already carries the form's values; the services compare against the row.
            stored = APIKey.objects.select_related("tenant").get(pk=obj.pk)
            if "expires_at" in form.changed_data:
                services.api_key_set_expiry(
                    api_key=stored, expires_at=data["expires_at"], actor=actor
                )
            fields = {name: data[name] for name in _EDITABLE if name in data}
            services.api_key_update(api_key=stored, **fields, actor=actor)
            return
        issued = services.api_key_create(
            tenant=data["tenant"], is_admin=data.get("is_admin", False),
            expires_at=data.get("expires_at"), **{n: data[n] for n in _EDITABLE}, actor=actor,
        )  # fmt: skip
        obj.pk, obj.public_id, obj._state.adding = (
            issued.api_key.pk,
            issued.api_key.public_id,
            False,
        )
        setattr(request, _ISSUED_ATTR, [issued])

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Nothing: the secrets inline is read-only and the services wrote everything."""

    def response_add(self, request: HttpRequest, obj: APIKey, post_url_continue: Any = None) -> Any:
        issued = getattr(request, _ISSUED_ATTR, None)
        if issued:
            return self._show_issued(request, issued, "API key created")
        return super().response_add(request, obj, post_url_continue)

    def _show_issued(
        self, request: HttpRequest, issued: list[IssuedKey], title: str
    ) -> HttpResponse:
        response = TemplateResponse(
            request,
            "admin/tenants/issued_keys.html",
            {**self.admin_site.each_context(request), "title": title, "issued": issued,
             "opts": self.model._meta},
        )  # fmt: skip
        add_never_cache_headers(response)
        patch_cache_control(response, no_store=True)
        return response

    def _too_many(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> bool:
        if queryset[: MAX_KEYS_PER_ACTION + 1].count() > MAX_KEYS_PER_ACTION:
            self.message_user(
                request, f"Select at most {MAX_KEYS_PER_ACTION} keys at a time.", messages.ERROR
            )
            return True
        return False

    @admin.action(description="Rotate selected keys (old secret works for the grace period)")
    def rotate_selected(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> Any:
        try:
            grace = KeyActionForm(request.POST).grace_value()
        except ValidationError as error:
            self.message_user(request, f"Grace: {'; '.join(error.messages)}", messages.ERROR)
            return None
        if self._too_many(request, queryset):
            return None
        live = list(queryset.filter(revoked_at__isnull=True))
        issued = [
            services.api_key_rotate(api_key=key, grace=grace, actor=admin_actor(request))
            for key in live
        ]
        if not issued:
            self.message_user(request, "Revoked keys cannot be rotated.", messages.WARNING)
            return None
        return self._show_issued(request, issued, "API keys rotated")

    @admin.action(description="Revoke selected keys (immediately, all secrets)")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> Any:
        if self._too_many(request, queryset):
            return None
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(
                request,
                "admin/tenants/confirm_revoke.html",
                {**self.admin_site.each_context(request), "title": "Revoke API keys?",
                 "keys": list(queryset), "opts": self.model._meta},
            )  # fmt: skip
        for key in queryset:
            services.api_key_revoke(api_key=key, actor=admin_actor(request))
        self.message_user(request, f"Revoked {len(queryset)} key(s).", messages.SUCCESS)
        return None

    @admin.action(description="Extend expiry of selected keys")
    def extend_expiry_selected(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        try:
            extend_by = KeyActionForm(request.POST).extend_by_value()
        except ValidationError as error:
            self.message_user(request, f"Extend by: {'; '.join(error.messages)}", messages.ERROR)
            return
        if self._too_many(request, queryset):
            return
        now, extended, skipped = timezone.now(), 0, 0
        for key in queryset:
            if key.is_revoked or key.expires_at is None:
                skipped += 1  # revoked for good, or never expires: nothing to extend
                continue
            services.api_key_set_expiry(
                api_key=key, expires_at=max(now, key.expires_at) + extend_by,
                actor=admin_actor(request),
            )  # fmt: skip
            extended += 1
        self.message_user(
            request, f"Extended {extended} key(s); skipped {skipped} (revoked or no expiry).",
            messages.SUCCESS,
        )  # fmt: skip
