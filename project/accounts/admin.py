from django.contrib import admin, messages
from django.urls import reverse
from django.utils.http import urlencode

from project.accounts import services
from project.accounts.models import ApiToken, Invite


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("user", "prefix", "digest", "created_at", "last_used_at")
    list_select_related = ("user",)
    actions = ["revoke"]

    def has_add_permission(self, request):
        # Tokens are made by their owner (settings page) or `manage.py create_api_token`,
        # so that the raw token is shown once to the person who will use it.
        return False

    def save_model(self, request, obj, form, change):
        # Setting revoked_at here revokes as the settings page does (open connections close too).
        if change and "revoked_at" in form.changed_data and obj.revoked_at is not None:
            services.token_revoke(user=obj.user, token_id=obj.pk)
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected tokens (and close their connections)")
    def revoke(self, request, queryset):
        for token in queryset.filter(revoked_at__isnull=True).select_related("user"):
            services.token_revoke(user=token.user, token_id=token.pk)


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ("__str__", "uses", "max_uses", "expires_at", "created_by", "created_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("note", "prefix", "created_by__username")
    fields = ("note", "max_uses", "expires_at", "uses", "prefix", "created_by", "created_at", "revoked_at")
    readonly_fields = ("uses", "prefix", "created_by", "created_at")
    list_select_related = ("created_by",)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        obj.created_by = request.user
        raw = services.invite_set_token(invite=obj)
        super().save_model(request, obj, form, change)
        link = request.build_absolute_uri(reverse("signup") + "?" + urlencode({"invite": raw}))
        self.message_user(request, f"Invite link (copy it now, it is not shown again): {link}", messages.SUCCESS)
