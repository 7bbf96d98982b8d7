from django import forms

from catalog import film_selectors as selectors
from catalog.models import Title


class TitleFilterForm(forms.Form):
    """The catalog home's search, filters and sorting (GET). A value that is not valid is
    dropped with a message on the page, never an error page."""

    q = forms.CharField(required=False, max_length=selectors.MAX_QUERY_CHARS, label="Search",
                        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Title (any language) or person"}))
    kind = forms.ChoiceField(required=False, choices=[("", "Films and TV"), *Title.Kind.choices], label="Kind")
    genre = forms.CharField(required=False, max_length=100, label="Genre")
    country = forms.CharField(required=False, max_length=100, label="Country or region")
    year = forms.IntegerField(required=False, min_value=1800, max_value=2200, label="Year")
    rating_min = forms.FloatField(required=False, min_value=0, max_value=10, label="Rating at least")
    sort = forms.ChoiceField(required=False, choices=list(selectors.SORT_LABELS.items()), label="Sort by")

    def filters(self) -> selectors.TitleFilters:
        data = self.cleaned_data if self.is_valid() else {
            name: value for name, value in getattr(self, "cleaned_data", {}).items() if name not in self.errors}
        return selectors.TitleFilters(
            q=(data.get("q") or "").strip(), kind=data.get("kind") or "", genre=data.get("genre") or "",
            country=data.get("country") or "", year=data.get("year"), rating_min=data.get("rating_min"),
            sort=data.get("sort") or selectors.DEFAULT_SORT)
