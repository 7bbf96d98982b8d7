"""The recorder's checks that need no database: file name templates refused when unsafe, names
made safe for any file system, output folders that cannot be written, the pull URL picked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from livefeed import record_services
from livefeed.recorder import pick_stream_url
from livefeed.services import LiveError


@pytest.mark.parametrize(("template", "fault"), [
    ("../{title}", "'..'"), ("/etc/{title}", "absolute"), ("C:{title}", "absolute"), ("{channel}/{nope}", "{nope}"),
    ("{date:%Y", "filename_template"), ("", "give"),
])
def test_unsafe_templates_are_refused_naming_the_field(template, fault):
    with pytest.raises(LiveError) as error:
        record_services.template_check(template)
    assert error.value.field == "filename_template"
    assert fault in error.value.message


def test_names_are_made_safe_for_any_file_system():
    name = record_services.render_name("{channel}/{date:%Y-%m-%d}_{title}", channel="a/b\\c", title='..:*?"<>|con',
                                       platform="simulator", ref="1", index=1,
                                       at=datetime(2026, 12, 1, tzinfo=UTC))
    folder, file = name.split("/")
    assert folder == "a_b_c"
    assert file.startswith("2026-12-01_")
    assert not set(file) & set('\\:*?"<>|')


def test_an_output_folder_that_cannot_be_written_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(LiveError) as error:
        record_services.output_dir_check(str(blocker / "recordings"))
    assert error.value.field == "output_dir"
    with pytest.raises(LiveError):
        record_services.output_dir_check("relative/folder")
    assert record_services.output_dir_check(str(tmp_path / "new")) == str(tmp_path / "new")


def test_the_best_flv_is_picked_unless_a_quality_is_asked():
    urls = {"flv:SD1": "http://s/sd.flv", "flv:FULL_HD1": "http://s/or4.flv", "hls:FULL_HD1": "http://s/or4.m3u8"}
    assert pick_stream_url(urls) == ("flv:FULL_HD1", "http://s/or4.flv")
    assert pick_stream_url(urls, "SD1") == ("flv:SD1", "http://s/sd.flv")
    assert pick_stream_url({"hls:HD1": "http://s/x.m3u8"}) is None
