from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "project.accounts"
    label = "accounts"
    verbose_name = "Accounts and API tokens"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save

        # Every path that makes a user inactive (the admin's change form, a shell, a
        # service) or deletes one also closes that user's open connections.
        user_model = get_user_model()
        post_save.connect(_user_saved, sender=user_model, dispatch_uid="accounts-revoke-inactive")
        post_delete.connect(_user_deleted, sender=user_model, dispatch_uid="accounts-revoke-deleted")


def _user_saved(sender, instance, created, **kwargs) -> None:
    if not created and not instance.is_active:
        from project.accounts.services import user_connections_revoke

        user_connections_revoke(user_id=instance.pk)


def _user_deleted(sender, instance, **kwargs) -> None:
    from project.accounts.services import user_connections_revoke

    user_connections_revoke(user_id=instance.pk)
