"""The Douban page parser (catalog/clients/douban_pages.py) on saved real pages (tests/catalog/pages,
see its README) and on the fake server's template pages: every field, exactly, and empty where
the page has none."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from catalog.clients import Credit, ListedTitle, Release, TitleDetails
from catalog.clients.douban_pages import BadList, NotASubject, parse_list, parse_subject
from tests.catalog.douban_fake import FakeSubject, Person, render

PAGES = Path(__file__).parent / "pages"


def page(name: str) -> str:
    return (PAGES / name).read_text(encoding="utf-8")


def people(role: str, *named: tuple[str, str]) -> list[Credit]:
    return [Credit(name=name, role=role, order=order, source_person_id=person_id)
            for order, (name, person_id) in enumerate(named)]


INCEPTION_SYNOPSIS = (
    "道姆·柯布（莱昂纳多·迪卡普里奥 Leonardo DiCaprio 饰）与同事阿瑟（约瑟夫·戈登-莱维特 Joseph Gordon-Levitt 饰）和纳什（卢卡斯·哈斯 "
    "Lukas Haas 饰）在一次针对日本能源大亨齐藤（渡边谦 饰）的盗梦行动中失败，反被齐藤利用。齐藤威逼利诱因遭通缉而流亡海外的柯布帮他拆分他竞争"
    "对手的公司，采取极端措施在其唯一继承人罗伯特·费希尔（希里安·墨菲 Cillian Murphy 饰）的深层潜意识中种下放弃家族公司、自立门户的想法。"
    "为了重返美国，柯布偷偷求助于岳父迈尔斯（迈克尔·凯恩 Michael Caine 饰），吸收了年轻的梦境设计师艾里阿德妮（艾伦·佩吉 Ellen Page 饰）、"
    "梦境演员艾姆斯（汤姆·哈迪 Tom Hardy 饰）和药剂师约瑟夫（迪利普·劳 Dileep Rao 饰）加入行动。在一层层递进的梦境中，柯布不仅要对付费希尔"
    "潜意识的本能反抗，还必须直面已逝妻子梅尔（玛丽昂·歌迪亚 Marion Cotillard 饰）的处处破坏，实际情况远比预想危险得多……")

INCEPTION_CAST = [
    ("莱昂纳多·迪卡普里奥", "1041029"), ("约瑟夫·高登-莱维特", "1101703"), ("艾利奥特·佩吉", "1012520"),
    ("汤姆·哈迪", "1049489"), ("渡边谦", "1027181"), ("迪利普·劳", "1274222"), ("基里安·墨菲", "1047992"),
    ("汤姆·贝伦杰", "1019024"), ("玛丽昂·歌迪亚", "1006955"), ("皮特·波斯尔思韦特", "1007023"),
    ("迈克尔·凯恩", "1054509"), ("卢卡斯·哈斯", "1002713"), ("李太力", "1380334"), ("克莱尔·吉尔蕾", "1380336"),
    ("马格努斯·诺兰", "1380343"), ("泰勒·吉蕾", "1049943"), ("乔纳森·吉尔", "1337996"), ("水源士郎", "1343095"),
    ("冈本玉二", "1132216"), ("厄尔·卡梅伦", "1074296"), ("瑞恩·海沃德", "1380350"), ("米兰达·诺兰", "1380352"),
    ("拉什·费加", "1366207"), ("蒂姆·科勒赫", "1328429"), ("妲露拉·莱莉", "1025060")]


def test_a_movie_with_the_hidden_long_synopsis_and_three_releases():
    details = parse_subject(page("subject_3541415.html"), source_id="3541415", kind="movie")
    assert details == TitleDetails(
        source="douban", source_id="3541415", kind="movie", title="盗梦空间", original_title="Inception",
        other_titles=["潜行凶间(港)", "全面启动(台)", "奠基", "心灵犯案", "记忆迷阵", "记忆魔方"], year=2010,
        rating=9.4, votes=1970885, synopsis=INCEPTION_SYNOPSIS,
        cover_url="https://img9.doubanio.com/view/photo/s_ratio_poster/public/p513344864.webp",
        releases=[Release(date(2010, 9, 1), "中国大陆"), Release(date(2020, 8, 28), "中国大陆重映"),
                  Release(date(2010, 7, 16), "美国")],
        runtime_min=148, imdb_id="tt1375666", genres=["剧情", "科幻", "悬疑", "冒险"], countries=["美国", "英国"],
        languages=["英语", "日语", "法语"],
        credits=people("director", ("克里斯托弗·诺兰", "1054524")) + people("writer", ("克里斯托弗·诺兰", "1054524"))
        + people("actor", *INCEPTION_CAST))
    assert details.release_date == date(2010, 7, 16)


def test_a_movie_with_several_runtimes_takes_the_first_and_keeps_paragraphs():
    details = parse_subject(page("subject_1306858.html"), source_id="1306858", kind="movie")
    assert details == TitleDetails(
        source="douban", source_id="1306858", kind="movie", title="圣诞坏公公", original_title="Bad Santa",
        other_titles=["圣诞有贼", "Badder Santa"], year=2003, rating=6.9, votes=3222,
        synopsis=(
            "威利（比利·鲍伯·松顿 Billy Bob Thornton 饰）的工作很有趣，每逢圣诞，他便会穿上一身圣诞老人的行头，带着雪白的大胡子对公司"
            "的商品进行促销。然而，对于威利来说，这份工作远远没有表面上看起来的那么简单，每一年的这个时候，除了欢度佳节，还是他和他的伙伴马库斯"
            "（托尼·考克斯 Tony Cox 饰）大赚一笔的最佳时刻，他的真正身份是一个小偷。\n"
            "今年和往年一样，可又有些不同。威利的诡异行踪遭到了精明的保安金（伯尼·麦克 Bernie Mac 饰）的怀疑，同时，百货公司的经理鲍勃"
            "（约翰·雷特尔 John Ritter 饰）也变成了难缠的人物。更让威利感到抓狂的是，一个8岁的小男孩盯上了他。在重重地阻力面前，威利的行动能否"
            "成功呢？"),
        cover_url="https://img1.doubanio.com/view/photo/s_ratio_poster/public/p1546893397.webp",
        releases=[Release(date(2003, 11, 26))], runtime_min=91, imdb_id="tt0307987", genres=["剧情", "喜剧", "犯罪"],
        countries=["美国", "德国"], languages=["英语"],
        credits=people("director", ("泰利·茨威戈夫", "1045150"))
        + people("writer", ("Glenn Ficarra", ""), ("John Requa", ""))
        + people("actor", ("比利·鲍伯·松顿", "1025200"), ("托尼·考克斯", "1000290"), ("布瑞特·凯利", "1168595"),
                 ("劳伦·格拉汉姆", "1031803"), ("劳伦·汤姆", "1025242")))


def test_a_tv_season_with_the_season_select_and_episodes():
    details = parse_subject(page("subject_35597581.html"), source_id="35597581", kind="tv")
    assert details == TitleDetails(
        source="douban", source_id="35597581", kind="tv", title="瑞克和莫蒂 第六季",
        original_title="Rick and Morty Season 6", year=2022, rating=9.3, votes=40181,
        synopsis="《瑞克和莫蒂》第六季，北京时间9月5日开播。",
        cover_url="https://img9.doubanio.com/view/photo/s_ratio_poster/public/p2877742044.jpg",
        releases=[Release(date(2022, 9, 4), "美国")], imdb_id="tt21599650", genres=["喜剧", "科幻", "动画", "冒险"],
        countries=["美国"], languages=["英语"], episode_count=10, episode_runtime_min=22, season_number=6,
        credits=people("director", ("贾斯汀·罗兰", "27503481"))
        + people("writer", ("丹·哈萌", "27534448"), ("贾斯汀·罗兰", "27503481"))
        + people("actor", ("贾斯汀·罗兰", "27503481"), ("汤姆·肯尼", "27319288"), ("塔伊加·维迪提", "27282111"),
                 ("克里斯·帕内尔", "27210454"), ("山姆·尼尔", "27255288"), ("保罗·吉亚玛提", "27223617"),
                 ("凯瑟琳·特纳", "27223671"), ("马修·布罗德里克", "27205735"), ("利亚姆·坎宁安", "27223801"),
                 ("斯宾瑟·格拉默", "27233013"), ("萨拉·乔克", "27255279")))
    assert details.release_date == date(2022, 9, 4)


def test_a_tv_miniseries_without_season_and_people_without_douban_ids():
    details = parse_subject(page("subject_1920763.html"), source_id="1920763", kind="tv")
    synopsis = details.synopsis
    details.synopsis = ""
    assert details == TitleDetails(
        source="douban", source_id="1920763", kind="tv", title="太空堡垒卡拉狄加", original_title="Battlestar Galactica",
        other_titles=["太空堡垒卡拉狄加 电视迷你剧", "太空战星"], year=2003, rating=8.7, votes=5535,
        cover_url="https://img9.doubanio.com/view/photo/s_ratio_poster/public/p2518294854.jpg",
        releases=[Release(date(2003, 12, 8))], imdb_id="tt0314979", genres=["剧情", "科幻", "战争"],
        countries=["美国", "加拿大"], languages=["英语"], episode_count=2, episode_runtime_min=90,
        credits=people("director", ("Michael Rymer", ""))
        + people("writer", ("格伦·A·拉尔森", "27222465"), ("罗纳德·D·摩尔", "27215262"))
        + people("actor", ("Edward James Olmos", ""), ("Mary McDonnell", ""), ("Katee Sackhoff", ""),
                 ("Jamie Bamber", ""), ("James Callis", ""), ("Tricia Helfer", ""), ("Callum Keith Rennie", "")))
    # The hidden long version (four paragraphs), not the cut short one.
    paragraphs = synopsis.split("\n")
    assert len(paragraphs) == 4
    assert paragraphs[0].startswith("Battlestar Galactica 是随七十年代星球大战的电影热潮而制成的科幻电视剧")
    assert paragraphs[3].endswith("从而以里应外合的方法把人类消灭。")
    assert "(展开全部)" not in synopsis


def test_a_runtime_written_as_about_n_min():
    details = parse_subject(page("subject_4296866.html"), source_id="4296866", kind="movie")
    assert details.runtime_min == 60  # "约60min"
    assert details.releases == [Release(date(2006, 12, 25))]
    assert (details.title, details.original_title) == ("神秘博士：逃跑新娘", "Doctor Who: The Runaway Bride")
    assert details.synopsis.startswith("失去了罗斯的博士正在心灰意冷")


def test_a_page_missing_fields_leaves_them_empty():
    details = parse_subject(page("subject_4296866_sparse.html"), source_id="4296866", kind="movie")
    assert details == TitleDetails(
        source="douban", source_id="4296866", kind="movie", title="神秘博士：逃跑新娘",
        original_title="Doctor Who: The Runaway Bride", releases=[Release(date(2006, 12, 25))],
        genres=["剧情", "喜剧", "科幻", "奇幻", "冒险"], countries=["英国"],
        credits=people("director", ("尤洛斯·林", "27518798"))
        + people("actor", ("大卫·田纳特", "27208361"), ("凯瑟琳·塔特", "27250745"), ("莎拉·帕里什", "27332922"),
                 ("Don Gilet", ""), ("Howard Attfield", "")))


def test_the_anti_bot_page_is_never_data():
    with pytest.raises(NotASubject) as blocked:
        parse_subject(page("blocked.html"), source_id="3541415")
    assert blocked.value.blocked
    assert "异常请求" in str(blocked.value)


@pytest.mark.parametrize("html", [
    "<html><head><title>页面不存在</title></head><body>你想访问的页面不存在</body></html>",
    "", "not html at all", "<html><body><div id='info'>导演: x</div></body></html>"])
def test_a_page_that_is_no_subject_is_refused(html):
    with pytest.raises(NotASubject) as refused:
        parse_subject(html, source_id="1")
    assert not refused.value.blocked


def test_template_pages_parse_every_form_of_runtime_date_and_season():
    subject = FakeSubject(
        "36081094", "奥本海默", original_title="Oppenheimer", year=2023,
        directors=[Person("克里斯托弗·诺兰", "1054524")], writers=[Person("Kai Bird")],
        cast=[Person("基里安·墨菲", "1047992"), Person("艾米莉·布朗特", "1028322")], genres=["剧情", "传记"],
        countries=["美国", "英国"], languages=["英语"],
        releases=["2023-08-30(中国大陆)", "2023-07(戛纳电影节)", "2023"], runtime="180分钟 / 151分钟(加长版)",
        other_titles=["奥本海默传"], imdb_id="tt15398776", synopsis="短的。", long_synopsis="长的 简介\n  第二段 ",
        rating="8.8", votes="123456", cover="https://img.example/p1.jpg")
    details = parse_subject(render(subject), source_id="36081094", kind="movie")
    assert details.releases == [Release(date(2023, 8, 30), "中国大陆"), Release(date(2023, 7, 1), "戛纳电影节", "month"),
                                Release(date(2023, 1, 1), "", "year")]
    assert details.runtime_min == 180
    assert details.synopsis == "长的 简介\n第二段"
    assert details.credits[1] == Credit(name="Kai Bird", role="writer", order=0)
    assert (details.title, details.original_title, details.year) == ("奥本海默", "Oppenheimer", 2023)
    assert (details.rating, details.votes, details.imdb_id) == (8.8, 123456, "tt15398776")
    tv = FakeSubject("2", "隐秘的角落", kind="tv", releases=["2020-06-16(中国大陆)"], seasons=["1", "2", "3"],
                     episode_count=12, episode_runtime="约60分钟")
    details = parse_subject(render(tv), source_id="2", kind="tv")
    assert (details.season_number, details.episode_count, details.episode_runtime_min) == (2, 12, 60)
    assert (details.title, details.original_title, details.runtime_min, details.rating) == ("隐秘的角落", "", None, None)


@pytest.mark.parametrize(("runtime", "minutes"), [
    ("142分钟 / 151分钟(加长版)", 142), ("约60分钟", 60), ("60min", 60), ("91 分钟", 91), ("45分", 45),
    ("France: 136 分钟(uncut version)", 136), ("未知", None), ("0分钟", None)])
def test_runtimes(runtime, minutes):
    details = parse_subject(render(FakeSubject("9", "片", runtime=runtime)), source_id="9")
    assert details.runtime_min == minutes


@pytest.mark.parametrize("release", ["2023-02-30(中国大陆)", "不详", "20230101"])
def test_a_release_that_is_not_a_date_is_left_out(release):
    details = parse_subject(render(FakeSubject("9", "片", releases=[release, "2020-01-02(美国)"])), source_id="9")
    assert details.releases == [Release(date(2020, 1, 2), "美国")]


def test_the_list():
    document = {"subjects": [{"episodes_info": "", "rate": "7.1", "cover_x": 1080, "title": "某片",
                              "url": "https://movie.douban.com/subject/35267208/", "playable": False,
                              "cover": "https://img1.doubanio.com/view/photo/s_ratio_poster/public/p1.jpg",
                              "id": "35267208", "cover_y": 1500, "is_new": True},
                             {"rate": "", "title": "新片", "url": "", "cover": "", "id": "2"}]}
    assert parse_list(document, kind="movie") == [
        ListedTitle("35267208", "某片", "movie", 7.1, "https://movie.douban.com/subject/35267208/",
                    "https://img1.doubanio.com/view/photo/s_ratio_poster/public/p1.jpg"),
        ListedTitle("2", "新片", "movie")]


@pytest.mark.parametrize(("document", "problem"), [
    ([], '"subjects"'), ({"subjects": None}, '"subjects"'), ({"subjects": [1]}, r"subjects\[0\] is not an object"),
    ({"subjects": [{"id": "x1", "title": "a"}]}, r"subjects\[0\]\.id"),
    ({"subjects": [{"id": "1", "title": ""}]}, r"subjects\[0\]\.title")])
def test_a_list_that_is_not_douban_s_names_the_problem(document, problem):
    with pytest.raises(BadList, match=problem):
        parse_list(document, kind="movie")
