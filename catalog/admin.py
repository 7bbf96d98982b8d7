import functools
import operator

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Q

from catalog import selectors, services, sync
from catalog.clients import registry as clients_registry
from catalog.film_models import LOCKABLE_FIELDS
from catalog.models import (
    Album,
    Artist,
    Country,
    Credit,
    Danmaku,
    Episode,
    ExternalId,
    Favorite,
    Genre,
    ImportJob,
    ImportSkip,
    Language,
    Person,
    Release,
    Season,
    SyncItem,
    SyncRun,
    Title,
    Track,
    Video,
    WatchProgress,
)


class FoldedSearch:
    """Admin search that also matches the folded keys (`folded_search_fields`, see
    catalog.selectors): case- and accent-insensitive in every script, on SQLite too."""

    folded_search_fields: tuple[str, ...] = ()

    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        words = selectors.search_words(search_term)
        if words and self.folded_search_fields:
            folded = Q()
            for word in words:
                folded &= functools.reduce(operator.or_, (Q(**{f"{field}__contains": word})
                                                          for field in self.folded_search_fields))
            found = found | queryset.filter(folded)
            may_have_duplicates = may_have_duplicates or any("__" in f for f in self.folded_search_fields)
        return found, may_have_duplicates


@admin.register(Artist)
class ArtistAdmin(FoldedSearch, admin.ModelAdmin):
    list_display = ("name", "play_count", "created_at")
    search_fields = ("name",)
    folded_search_fields = ("search_key",)
    list_filter = ("created_at",)


@admin.register(Album)
class AlbumAdmin(FoldedSearch, admin.ModelAdmin):
    list_display = ("title", "artist", "year", "play_count", "created_at")
    search_fields = ("title", "artist__name")
    folded_search_fields = ("search_key", "artist__search_key")
    list_filter = ("year",)
    list_select_related = ("artist",)
    autocomplete_fields = ("artist",)


class MissingFilter(admin.SimpleListFilter):
    title = "file on disk"
    parameter_name = "missing"

    def lookups(self, request, model_admin):
        return [("yes", "Missing"), ("no", "Present")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(missing_since__isnull=False)
        if self.value() == "no":
            return queryset.filter(missing_since__isnull=True)
        return queryset


@admin.register(Track)
class TrackAdmin(FoldedSearch, admin.ModelAdmin):
    list_display = ("title", "artist", "album", "track_number", "duration_s", "format", "play_count", "missing_since", "added_at")
    search_fields = ("title", "artist__name", "album__title", "file_path", "checksum")
    folded_search_fields = ("match_key", "album__search_key")
    list_filter = (MissingFilter, "format", "added_at")
    list_select_related = ("artist", "album")
    autocomplete_fields = ("artist", "album")
    readonly_fields = ("checksum", "size_bytes", "file_mtime_ns", "added_at", "missing_since")


@admin.register(ImportSkip)
class ImportSkipAdmin(admin.ModelAdmin):
    list_display = ("path", "reason", "job")
    search_fields = ("path", "reason")
    list_filter = ("job__status",)
    list_select_related = ("job",)


class ImportSkipInline(admin.TabularInline):
    model = ImportSkip
    extra = 0
    can_delete = False
    readonly_fields = ("path", "reason")


class ImportJobForm(forms.ModelForm):
    class Meta:
        model = ImportJob
        fields = ("path",)

    def clean_path(self):
        try:
            return str(services.validate_import_path(self.cleaned_data["path"], restrict_to_library=False))
        except ValidationError as exc:
            raise forms.ValidationError(exc.messages) from None


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    form = ImportJobForm
    list_display = ("id", "path", "status", "files_seen", "imported", "already_present", "skipped", "created_by", "created_at", "finished_at")
    list_filter = ("status", "created_at")
    search_fields = ("path",)
    readonly_fields = ("status", "files_total", "files_seen", "imported", "already_present", "skipped", "error", "created_by", "created_at", "started_at", "finished_at")
    fields = ("path", *readonly_fields)
    inlines = [ImportSkipInline]
    actions = ["run_again"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        # New imports from the admin go through the same service as the import page.
        job = services.import_job_create(path=form.cleaned_data["path"], user=request.user, restrict_to_library=False)
        obj.pk = job.pk
        obj.__dict__.update(ImportJob.objects.get(pk=job.pk).__dict__)

    @admin.action(description="Import these folders again")
    def run_again(self, request, queryset):
        for job in queryset:
            services.import_job_create(path=job.path, user=request.user, restrict_to_library=False)
        messages.success(request, f"{queryset.count()} import(s) queued.")


# --- the film catalog -------------------------------------------------------------------------
# Field locks: a lockable field (catalog.film_models.LOCKABLE_FIELDS) edited here is locked, so
# no sync overwrites the edit (catalog/merge.py); the change form shows the locks and releases
# them ("Release locks", or the action on the list).

def _lock_names(fields) -> str:
    return ", ".join(fields) if fields else "—"


class ExternalIdInline(admin.TabularInline):
    model = ExternalId
    extra = 0


class ReleaseInline(admin.TabularInline):
    model = Release
    extra = 0


class CreditInline(admin.TabularInline):
    model = Credit
    extra = 0
    autocomplete_fields = ("person",)
    ordering = ("role", "order")


class SeasonInline(admin.TabularInline):
    model = Season
    extra = 0
    show_change_link = True


# Inline rows edited by hand lock the field they stand for.
INLINE_LOCKS = {Release: "releases", Credit: "credits"}


class TitleAdminForm(forms.ModelForm):
    release_locks = forms.MultipleChoiceField(
        choices=[(name, name) for name in LOCKABLE_FIELDS], required=False, widget=forms.CheckboxSelectMultiple,
        label="Release locks", help_text="Tick a locked field to release it: the next sync may write it again.")

    class Meta:
        model = Title
        # Every lockable field but the inlines' (releases, credits); locked_fields is shown, not typed.
        fields = ("kind", *(name for name in LOCKABLE_FIELDS if name not in INLINE_LOCKS.values()))


@admin.register(Title)
class TitleAdmin(FoldedSearch, admin.ModelAdmin):
    form = TitleAdminForm
    list_display = ("title", "kind", "year", "rating", "locks", "details_fetched_at")
    list_filter = ("kind", "genres", "year", "countries")
    search_fields = ("title", "original_title", "imdb_id", "external_ids__value")
    folded_search_fields = ("search_key",)
    readonly_fields = ("locks", "sources", "cover_source_url", "details_fetched_at", "created_at", "updated_at")
    filter_horizontal = ("genres", "countries", "languages")
    inlines = [ExternalIdInline, ReleaseInline, CreditInline, SeasonInline]
    actions = ["release_all_locks"]

    @admin.display(description="Locked fields (no sync writes them)")
    def locks(self, title: Title) -> str:
        return _lock_names(title.locked_fields)

    @admin.display(description="Written by")
    def sources(self, title: Title) -> str:
        return ", ".join(f"{field}: {source}" for field, source in sorted((title.field_sources or {}).items())) or "—"

    @staticmethod
    def _edited(form, change: bool) -> set[str]:
        """The lockable fields whose value the form changes (not merely re-posts: a JSON list
        posted back as it was counts as "changed" to Django's form)."""
        names = {name for name in form.changed_data if name in LOCKABLE_FIELDS}
        if not change:
            return names
        before = Title.objects.get(pk=form.instance.pk)
        edited = set()
        for name in names:
            if name in ("genres", "countries", "languages"):
                if set(getattr(before, name).values_list("pk", flat=True)) != {row.pk for row in form.cleaned_data[name]}:
                    edited.add(name)
            elif getattr(before, name) != form.cleaned_data.get(name):
                edited.add(name)
        return edited

    def save_model(self, request, obj, form, change):
        edited = self._edited(form, change)
        released = set(form.cleaned_data.get("release_locks") or [])
        obj.locked_fields = [name for name in LOCKABLE_FIELDS
                             if name in ({*(obj.locked_fields or []), *edited} - released)]
        super().save_model(request, obj, form, change)
        if released:
            messages.info(request, f"Released: {_lock_names(sorted(released))}. The next sync may write them.")

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        edited = {INLINE_LOCKS[formset.model] for formset in formsets
                  if formset.model in INLINE_LOCKS and formset.has_changed()}
        title = form.instance
        if edited - set(title.locked_fields or []):
            title.locked_fields = [name for name in LOCKABLE_FIELDS if name in {*title.locked_fields, *edited}]
            Title.objects.filter(pk=title.pk).update(locked_fields=title.locked_fields)

    @admin.action(description="Release every field lock (the next sync may write them again)")
    def release_all_locks(self, request, queryset):
        count = queryset.exclude(locked_fields=[]).update(locked_fields=[])
        messages.success(request, f"Locks released on {count} title(s).")


@admin.register(Season)
class SeasonAdmin(admin.ModelAdmin):
    list_display = ("title", "number", "name", "air_date")
    search_fields = ("title__title", "name")
    list_select_related = ("title",)
    autocomplete_fields = ("title",)

    class EpisodeInline(admin.TabularInline):
        model = Episode
        extra = 0

    inlines = [EpisodeInline]


@admin.register(Episode)
class EpisodeAdmin(admin.ModelAdmin):
    list_display = ("season", "number", "name", "air_date", "runtime_min")
    search_fields = ("season__title__title", "name")
    list_select_related = ("season__title",)


@admin.register(Person)
class PersonAdmin(FoldedSearch, admin.ModelAdmin):
    list_display = ("name", "key", "created_at")
    search_fields = ("name", "key")
    folded_search_fields = ("search_key",)


@admin.register(Genre, Country, Language)
class NamedAdmin(admin.ModelAdmin):
    list_display = ("name",)
    search_fields = ("name",)


@admin.register(ExternalId)
class ExternalIdAdmin(admin.ModelAdmin):
    list_display = ("title", "source", "kind", "value")
    list_filter = ("source", "kind")
    search_fields = ("value", "title__title")
    list_select_related = ("title",)
    autocomplete_fields = ("title",)


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = ("title", "date", "region", "precision")
    search_fields = ("title__title", "region")
    list_select_related = ("title",)
    autocomplete_fields = ("title",)


@admin.register(Credit)
class CreditAdmin(admin.ModelAdmin):
    list_display = ("title", "person", "role", "order", "character")
    list_filter = ("role",)
    search_fields = ("title__title", "person__name", "character")
    list_select_related = ("title", "person")
    autocomplete_fields = ("title", "person")


@admin.register(Video)
class VideoAdmin(admin.ModelAdmin):
    list_display = ("file_path", "title", "episode", "mime_type", "duration_s", "added_at")
    search_fields = ("file_path", "title__title")
    list_select_related = ("title", "episode")
    autocomplete_fields = ("title",)
    raw_id_fields = ("episode",)


@admin.register(Danmaku)
class DanmakuAdmin(admin.ModelAdmin):
    list_display = ("text", "title", "offset_ms", "user", "mode", "created_at")
    list_filter = ("mode", "created_at")
    search_fields = ("text", "title__title", "user__username")
    list_select_related = ("title", "user")
    raw_id_fields = ("title", "episode", "user")


@admin.register(Favorite)
class FavoriteAdmin(admin.ModelAdmin):
    list_display = ("user", "title", "created_at")
    search_fields = ("user__username", "title__title")
    list_select_related = ("user", "title")
    raw_id_fields = ("user", "title")


@admin.register(WatchProgress)
class WatchProgressAdmin(admin.ModelAdmin):
    list_display = ("user", "title", "episode", "position_s", "finished", "updated_at")
    list_filter = ("finished",)
    search_fields = ("user__username", "title__title")
    list_select_related = ("user", "title", "episode")
    raw_id_fields = ("user", "title", "episode")


class SyncItemInline(admin.TabularInline):
    model = SyncItem
    extra = 0
    can_delete = False
    fields = ("kind", "source_id", "label", "state", "reason", "title")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


def _sync_now_action(source_name: str, label: str):
    def action(modeladmin, request, queryset):
        try:
            run, started = sync.sync_start(source=source_name, trigger=SyncRun.Trigger.MANUAL, user=request.user)
        except sync.SyncRefused as exc:
            messages.error(request, exc.message)
            return
        verb = "started" if started else "is already running"
        messages.success(request, f"Sync run {run.pk} of {label} {verb}: {run.get_absolute_url()}")

    action.__name__ = f"sync_now_{source_name}"
    return admin.action(description=f"Sync now: {label} (any row selected)")(action)


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    """The history, read-only: runs are made by triggers (the actions here, the catalog page,
    the API, the beat) and written by the sync alone."""

    list_display = ("id", "source", "kind", "trigger", "state", "listed", "new", "updated", "unchanged", "skipped",
                    "failed", "detail_requests", "created_at", "finished_at")
    list_filter = ("source", "state", "kind", "trigger")
    readonly_fields = ("source", "kind", "trigger", "state", "requested_by", "created_at", "started_at",
                       "finished_at", "lease_until", "retry_at", "listed", "done", "new", "updated", "unchanged",
                       "skipped", "failed", "detail_requests", "current_item", "error", "errors_table")
    exclude = ("errors",)
    inlines = [SyncItemInline]

    def get_actions(self, request):
        actions = super().get_actions(request)
        for source in clients_registry:
            action = _sync_now_action(source.name, source.label)
            actions[action.__name__] = (action, action.__name__, action.short_description)
        return actions

    @admin.display(description="Errors")
    def errors_table(self, run: SyncRun) -> str:
        from django.utils.html import format_html_join

        return format_html_join("", "<p><b>{}</b>: {}</p>", ((e.get("item", ""), e.get("reason", ""))
                                                            for e in run.errors)) or "—"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
