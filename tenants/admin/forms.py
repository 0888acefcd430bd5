"""Admin forms: comma-separated model names, durations, the key action form."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.admin.helpers import ActionForm

from tenants.durations import parse_duration
from tenants.services import MAX_GRACE


class ModelNamesField(forms.CharField):
    """A list of model names typed as `gpt-4o, llama-3`; empty means no restriction."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "Comma-separated model names; empty = no restriction.")
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, list | tuple):
            return ", ".join(value)
        return super().prepare_value(value)

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value)
        return sorted({name.strip() for name in text.split(",") if name.strip()})


def clean_duration(text: str, *, maximum: timedelta | None = None) -> timedelta:
    try:
        duration = parse_duration(text)
    except ValueError as error:
        raise forms.ValidationError(str(error)) from None
    if maximum is not None and duration > maximum:
        raise forms.ValidationError(f"at most {maximum.days} days")
    return duration


class KeyActionForm(ActionForm):
    grace = forms.CharField(
        required=False,
        initial="24h",
        label="Grace",
        help_text="For rotate: how long the old secret keeps working (max 30d).",
        widget=forms.TextInput(attrs={"size": 5}),
    )
    extend_by = forms.CharField(
        required=False,
        initial="30d",
        label="Extend by",
        help_text="For extend expiry.",
        widget=forms.TextInput(attrs={"size": 5}),
    )

    def grace_value(self) -> timedelta:
        return clean_duration(self.data.get("grace") or "24h", maximum=MAX_GRACE)

    def extend_by_value(self) -> timedelta:
        return clean_duration(self.data.get("extend_by") or "30d")
