import functools
import operator

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Q

from catalog import selectors, services
from catalog.models import Album, Artist, ImportJob, ImportSkip, Track


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
