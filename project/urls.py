from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import TemplateView

from project import health, views
from project.accounts import views as account_views
from project.api import api
from project.metrics import metrics_view
from scrobbling import compat as listenbrainz_compat

admin.site.site_header = "Chorus administration"
admin.site.site_title = "Chorus admin"

urlpatterns = [
    path("", views.home, name="home"),
    path("listening-now", views.listening_now, name="listening-now"),
    path("healthz", health.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("metrics", metrics_view, name="prometheus-django-metrics"),
    path("api/", api.urls),
    # ListenBrainz-compatible: point a scrobbler client at <this server>/apis/listenbrainz.
    path("apis/listenbrainz/1/submit-listens", listenbrainz_compat.submit_listens, name="listenbrainz-submit"),
    path("apis/listenbrainz/1/validate-token", listenbrainz_compat.validate_token, name="listenbrainz-validate"),
    # The same at the root, for clients that drop the path of their base URL (liblistenbrainz).
    path("1/submit-listens", listenbrainz_compat.submit_listens),
    path("1/validate-token", listenbrainz_compat.validate_token),
    # With a trailing slash too; anything else under the ListenBrainz root: a JSON 404.
    path("apis/listenbrainz/1/submit-listens/", listenbrainz_compat.submit_listens),
    path("apis/listenbrainz/1/validate-token/", listenbrainz_compat.validate_token),
    path("1/submit-listens/", listenbrainz_compat.submit_listens),
    path("1/validate-token/", listenbrainz_compat.validate_token),
    path("apis/listenbrainz/<path:rest>", listenbrainz_compat.unknown_endpoint),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", account_views.signup, name="signup"),
    path("accounts/invites/", account_views.invites, name="invites"),
    path("accounts/invites/<int:invite_id>/revoke", account_views.invite_revoke, name="invite-revoke"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("accounts/settings/", account_views.account_settings, name="account-settings"),
    path("accounts/tokens/<int:token_id>/revoke", account_views.token_revoke, name="token-revoke"),
    path("", include("catalog.urls")),
    path("rooms/", include("rooms.urls")),
    path("", include("scrobbling.urls")),
    path("live/", include("livefeed.urls")),
]

if settings.DEBUG:
    urlpatterns.append(path("500-preview/", TemplateView.as_view(template_name="500.html")))

handler404 = "project.views.not_found"
handler500 = "project.views.server_error"
