"""Members in the admin: added by username (no user list is exposed to tenant admins)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.shortcuts import redirect

from tenants import services
from tenants.admin.scoping import TenantScopedAdmin, admin_actor, is_owner_of
from tenants.models import Membership


class MembershipAddForm(forms.ModelForm):
    username = forms.CharField(max_length=150)
    request: HttpRequest

    class Meta:
        model = Membership
        fields = ("tenant", "role")

    def clean_username(self) -> Any:
        user = get_user_model().objects.filter(username=self.cleaned_data["username"]).first()
        if user is None:
            raise ValidationError("No such user.")
        return user

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        tenant, role = data.get("tenant"), data.get("role")
        if tenant and role == Membership.Role.OWNER and not is_owner_of(self.request, tenant.pk):
            raise ValidationError("Only an owner may grant the owner role.")
        return data


class MembershipRoleForm(forms.ModelForm):
    request: HttpRequest

    class Meta:
        model = Membership
        fields = ("role",)

    def clean_role(self) -> str:
        role = self.cleaned_data["role"]
        stored_role = Membership.objects.values_list("role", flat=True).get(pk=self.instance.pk)
        touches_owner = Membership.Role.OWNER in (role, stored_role)
        if touches_owner and not is_owner_of(self.request, self.instance.tenant_id):
            raise ValidationError("Only an owner may grant or take away the owner role.")
        if role != Membership.Role.OWNER:
            services.validate_owner_remains(membership=Membership.objects.get(pk=self.instance.pk))
        return role


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_select_related = ("user", "tenant")
    list_filter = ("role",)
    search_fields = ("^user__username",)
    ordering = ("-id",)
    show_full_result_count = False

    def get_form(
        self, request: HttpRequest, obj: Membership | None = None, change: bool = False, **kw: Any
    ) -> Any:
        kw["form"] = MembershipRoleForm if obj is not None else MembershipAddForm
        form_class = super().get_form(request, obj, change=change, **kw)
        return type(form_class.__name__, (form_class,), {"request": request})

    def get_fields(self, request: HttpRequest, obj: Membership | None = None) -> Any:
        return ("user", "tenant", "role", "created_at") if obj else ("tenant", "username", "role")

    def get_readonly_fields(self, request: HttpRequest, obj: Membership | None = None) -> Any:
        return ("user", "tenant", "created_at") if obj else ()

    def has_delete_permission(self, request: HttpRequest, obj: Membership | None = None) -> bool:
        return self.has_change_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, through the service
        return actions

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        if change:
            # `obj` already carries the new role; the service compares against the row.
            stored = Membership.objects.select_related("tenant").get(pk=obj.pk)
            services.membership_set_role(
                membership=stored, role=form.cleaned_data["role"], actor=admin_actor(request)
            )
            return
        created = services.membership_add(
            tenant=form.cleaned_data["tenant"],
            user=form.cleaned_data["username"],
            role=form.cleaned_data["role"],
            actor=admin_actor(request),
        )
        obj.pk, obj.user, obj._state.adding = created.pk, created.user, False

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        if obj.role == Membership.Role.OWNER and not is_owner_of(request, obj.tenant_id):
            raise ValidationError("Only an owner may remove an owner.")
        services.membership_remove(membership=obj, actor=admin_actor(request))

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as error:
            self.message_user(request, "; ".join(error.messages), messages.ERROR)
            return redirect("admin:tenants_membership_changelist")
