"""The demo Douban's titles: 24 made-up films and 8 made-up TV seasons, and the made-up people
in them. Nothing here is a real film or a real person.

The titles, their countries, languages, genres and one-line synopses are written out below;
everything else (people and who is in what, release dates with their regions, runtimes,
ratings and votes, episode counts, the long synopses) is drawn from a random generator seeded
with the title's id, so every machine and every start serves the same catalog, and adding a
title changes no other.

Ids are out of the real sites' ranges so that a demo title never meets a real one when the
sync merges by id: Douban subject ids from 99000001 and celebrity ids from 99100001 (Douban is
near 37 million), IMDb-style ids tt99000001 and up (IMDb is near tt36000000).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, replace
from datetime import date, timedelta

from catalog.demo_source.pages import Person, Subject

FIRST_SUBJECT_ID = 99000001
FIRST_PERSON_ID = 99100001
COVER_PATH = "/view/photo/s_ratio_poster/public/p{source_id}.png"
EARLIEST = date(2025, 1, 10)  # the demo's releases fall between these two days
LATEST = date(2026, 11, 20)


@dataclass(frozen=True)
class DemoTitle:
    kind: str  # "movie" or "tv"
    title: str  # the Chinese title Douban shows first
    original_title: str  # "" for a Chinese-language title, as on Douban
    english: str  # the English name: the cover's initials and, when it is no original title, an aka
    countries: tuple[str, ...]
    languages: tuple[str, ...]
    genres: tuple[str, ...]
    synopsis: str
    aka: tuple[str, ...] = ()  # other names (又名) besides the English one
    season: int | None = None  # TV: which season this subject is
    show: str = ""  # TV: the show several seasons belong to (for the 季数 select)


M, T = "movie", "tv"
MAINLAND, HK, TW = "中国大陆", "中国香港", "中国台湾"
MANDARIN, CANTONESE = "汉语普通话", "粤语"

TITLES: tuple[DemoTitle, ...] = (
    DemoTitle(M, "盐之路", "", "The Salt Road", (MAINLAND,), (MANDARIN,), ("剧情", "公路"),
              "一位退休的盐场会计带着外孙女，沿着废弃的运盐古道走回自己出生的村庄。", aka=("古道",)),
    DemoTitle(M, "八手夜曲", "Nocturne for Eight Hands", "Nocturne for Eight Hands", ("美国",), ("英语",),
              ("剧情", "音乐"), "四位彼此不和的钢琴家被一份遗嘱绑在同一架钢琴前，必须合奏完一首从未完成的夜曲。",
              aka=("八手夜想曲",)),
    DemoTitle(M, "最后的灯塔", "Le Dernier Phare", "The Last Lighthouse", ("法国",), ("法语", "布列塔尼语"),
              ("剧情", "悬疑"), "布列塔尼海岸最后一座有人看守的灯塔即将自动化，守塔人却在交接前一夜失踪了。"),
    DemoTitle(M, "雾港", "", "Harbour of Fog", (HK,), (CANTONESE, "英语"), ("犯罪", "惊悚"),
              "一艘没有船员的货轮在浓雾中靠岸，码头夜班督察发现船舱里只有一台仍在运转的收音机。"),
    DemoTitle(M, "夏日回声", "夏のこだま", "Echoes of Summer", ("日本",), ("日语",), ("剧情", "爱情"),
              "山谷小镇的回声据说会把话传到明年夏天，一个少女每年八月都对着山谷说同一句话。"),
    DemoTitle(M, "纸飞机协会", "The Paper Plane Society", "The Paper Plane Society", ("英国",), ("英语",),
              ("喜剧", "家庭"), "一群住在养老院的老人偷偷筹备一场横跨英吉利海峡的纸飞机比赛。", aka=("纸飞机俱乐部",)),
    DemoTitle(M, "第七层", "일곱 번째 층", "The Seventh Floor", ("韩国",), ("韩语",), ("惊悚", "悬疑"),
              "一栋只有六层的公寓楼，电梯却偶尔会停在不存在的第七层。"),
    DemoTitle(M, "铁轨上的月亮", "", "Moon on the Rails", (TW,), (MANDARIN, "闽南语"), ("剧情", "爱情"),
              "平溪线停驶前的最后一个月，站长和一位每天来拍月亮的摄影师成了朋友。"),
    DemoTitle(M, "静默频率", "Silent Frequency", "Silent Frequency", ("美国", "加拿大"), ("英语",), ("科幻", "惊悚"),
              "射电望远镜收到的一段信号让整座北方小城的电器同时安静了十三秒。", aka=("沉默频段",)),
    DemoTitle(M, "橄榄树下", "Bajo el olivo", "Under the Olive Tree", ("西班牙",), ("西班牙语",), ("剧情", "家庭"),
              "三代人为了一棵据说有一千年树龄的橄榄树该不该卖给城里的收藏家争吵了整个收获季。"),
    DemoTitle(M, "冰原信使", "Die Eisbotin", "The Ice Courier", ("德国", "冰岛"), ("德语", "冰岛语"),
              ("冒险", "剧情"), "暴风雪封路之后，一名邮递员必须徒步穿越冰原，把一封信送到岛的另一端。"),
    DemoTitle(M, "云端食堂", "", "Canteen in the Clouds", (MAINLAND,), (MANDARIN,), ("喜剧",),
              "山顶气象站的食堂要评星级了，厨师长只有一口锅和三个不会做饭的气象员。"),
    DemoTitle(M, "玻璃果园", "The Glass Orchard", "The Glass Orchard", ("澳大利亚",), ("英语",), ("剧情", "奇幻"),
              "一位吹玻璃的匠人在干旱的果园里用玻璃做出了一整季的苹果。", aka=("琉璃果园",)),
    DemoTitle(M, "风筝季节", "", "Kite Season", (MAINLAND,), (MANDARIN,), ("剧情", "儿童"),
              "海边小学的孩子们要在春天放飞一只和教学楼一样长的风筝。"),
    DemoTitle(M, "深海回信", "Letters from the Deep", "Letters from the Deep", ("美国",), ("英语",),
              ("动画", "冒险"), "一只灯笼鱼收到了从海面漂下来的漂流瓶，决定游上去回信。", aka=("海底来信",)),
    DemoTitle(M, "北方邮局", "北の郵便局", "The Northern Post Office", ("日本",), ("日语",), ("剧情",),
              "北海道最北的邮局只剩一位局长，他还在替一位已经搬走的老人保管每天寄来的明信片。"),
    DemoTitle(M, "红灯笼旅馆", "", "Red Lantern Inn", (MAINLAND,), (MANDARIN, "四川话"), ("悬疑", "喜剧"),
              "山城一家老旅馆的每个房间都挂着红灯笼，某晚所有的灯笼同时熄灭了。"),
    DemoTitle(M, "拳台上的诗人", "링 위의 시인", "The Poet in the Ring", ("韩国",), ("韩语",), ("运动", "剧情"),
              "一位落选的诗人为了还债走上业余拳台，在每一回合的间隙写下一行诗。"),
    DemoTitle(M, "看不见的街道", "Atlas of Unseen Streets", "Atlas of Unseen Streets", ("英国", "爱尔兰"),
              ("英语", "爱尔兰语"), ("剧情", "奇幻"), "一位地图测绘员发现都柏林有一条只在雨天出现的街道。",
              aka=("隐形街道图鉴",)),
    DemoTitle(M, "蓝狐狸", "Le Renard bleu", "The Blue Fox", ("法国", "比利时"), ("法语",), ("动画", "家庭"),
              "一只天生蓝色的狐狸在雪地里藏不住自己，只好学着在夜空下生活。"),
    DemoTitle(M, "八号风球", "", "Signal Number Eight", (HK,), (CANTONESE,), ("动作", "犯罪"),
              "台风挂起八号风球的那个下午，一宗珠宝店劫案的劫匪和警察被困在同一辆电车上。"),
    DemoTitle(M, "星际园丁", "The Star Gardener", "The Star Gardener", ("美国",), ("英语",), ("科幻", "家庭"),
              "空间站上唯一的园丁要在补给船到来前，让一株地球番茄结出果实。", aka=("太空园丁",)),
    DemoTitle(M, "末班车之后", "終電の向こう", "Past the Last Train", ("日本",), ("日语",), ("剧情", "爱情"),
              "错过末班车的两个陌生人决定沿着铁轨一起走到天亮。"),
    DemoTitle(M, "山海之间", "", "Between Mountain and Sea", (MAINLAND,), (MANDARIN, "藏语"), ("剧情", "冒险"),
              "一位藏族牧民的女儿考上了海边的大学，全家决定开着拖拉机送她去报到。"),
    DemoTitle(T, "雾都来信 第一季", "Letters from the Fog Season 1", "Letters from the Fog", ("英国",), ("英语",),
              ("剧情", "悬疑"), "伦敦一家旧邮局的分拣员开始收到寄给一百年前住户的信。", season=1, show="fog"),
    DemoTitle(T, "雾都来信 第二季", "Letters from the Fog Season 2", "Letters from the Fog", ("英国",), ("英语",),
              ("剧情", "悬疑"), "寄信人终于露面，分拣员却发现自己的名字也出现在了一百年前的信封上。", season=2,
              show="fog"),
    DemoTitle(T, "长安夜巡", "", "Night Watch of Chang'an", (MAINLAND,), (MANDARIN,), ("悬疑", "古装"),
              "长安城的一支夜巡小队每晚在宵禁后巡街，每一夜都遇到一件离奇的小案子。", season=1),
    DemoTitle(T, "小城厨房", "", "Small Town Kitchen", (MAINLAND,), (MANDARIN,), ("喜剧", "家庭"),
              "回到小城接手父亲面馆的年轻人，要在一年里学会父亲的一百道家常菜。", season=1),
    DemoTitle(T, "九号轨道站", "Orbital Station Nine", "Orbital Station Nine", ("美国",), ("英语",), ("科幻", "剧情"),
              "一座即将退役的轨道站上，最后七名乘员各自藏着不愿回地球的理由。", season=1, aka=("轨道站九号",)),
    DemoTitle(T, "商店街侦探团", "商店街探偵団", "The Shopping Street Detectives", ("日本",), ("日语",),
              ("喜剧", "悬疑"), "一条老商店街的店主们组成侦探团，专门调查街上丢失的猫、伞和秘密。", season=1),
    DemoTitle(T, "首尔雨季", "서울의 우기", "Seoul Rainy Season", ("韩国",), ("韩语",), ("爱情", "剧情"),
              "每到雨季就会重逢的两个人，用十年的雨季谈完了一场恋爱。", season=1),
    DemoTitle(T, "云上牧场", "", "Ranch Above the Clouds", (MAINLAND,), (MANDARIN,), ("剧情",),
              "一群城里长大的年轻人接手了一座海拔四千米的牧场。", season=1),
)

# The made-up people, by the first country of a title: names as Douban writes them.
_NAMES = {
    "zh": (("林", "陈", "周", "许", "沈", "顾", "唐", "苏", "叶", "方", "程", "陆", "孟", "江", "白", "宋"),
           ("一舟", "晓岚", "子墨", "思远", "若溪", "景行", "书瑶", "明川", "慕白", "听雨", "青禾", "远山",
            "知夏", "念安", "星河", "清和", "语桐", "北辰")),
    "ja": (("高岛", "森川", "早濑", "水野", "神谷", "藤堂", "桐生", "宫泽", "白石", "椎名"),
           ("真央", "悠人", "凛", "拓海", "葵", "莲", "结衣", "苍太", "遥", "诚")),
    "ko": (("朴", "金", "李", "崔", "郑", "姜", "尹", "韩"),
           ("素妍", "在勋", "智敏", "俊浩", "慧珍", "泰植", "瑟琪", "多贤", "宇彬", "夏恩")),
    "west": (("艾琳", "诺拉", "马库斯", "伊莱", "西奥", "玛蒂尔德", "奥斯卡", "露西安", "费利克斯", "埃莉诺",
              "雨果", "卡米尔", "朱利安", "伊内丝", "托比亚斯", "芙蕾雅"),
             ("韦斯特布鲁克", "哈洛韦", "范德林", "莫雷尔", "奥格雷迪", "斯坦菲尔德", "布莱克索恩", "杜布瓦",
              "格拉纳多斯", "林德霍尔姆", "阿什福德", "维拉纽瓦")),
}
_PEOPLE_PER_GROUP = 30
_REGIONS = {"中国大陆": "中国大陆", "中国香港": "中国香港", "中国台湾": "中国台湾"}
_FESTIVALS = ("多伦多电影节", "柏林电影节", "戛纳电影节", "威尼斯电影节", "釜山电影节", "上海国际电影节",
              "东京国际电影节", "圣丹斯电影节")
_LONG_TEMPLATES = (
    "{a}饰演的主人公起初只想把这件事当作一份差事，直到{b}出现，才发现自己早已身在其中。",
    "影片用{n}个段落写了一年里的四季，每一段都从一个看似无关的细节开始。",
    "{b}和{c}的对手戏安静而克制，许多话都留在了没有说出口的地方。",
    "导演把大部分镜头留给了{place}本身：风声、灯光和人们日复一日的小习惯。",
    "故事的最后，{a}终于明白，真正要找的东西一直就在出发的地方。",
)
_PLACES = ("小镇", "海岸", "旧城", "山谷", "车站", "港口", "街道")


def group_of(countries: tuple[str, ...]) -> str:
    first = countries[0]
    return {"日本": "ja", "韩国": "ko"}.get(first, "zh" if first in _REGIONS else "west")


@functools.cache
def people() -> dict[str, tuple[Person, ...]]:
    """Each group's made-up people, with Douban-style celebrity ids; the same on every call."""
    pools: dict[str, tuple[Person, ...]] = {}
    next_id = FIRST_PERSON_ID
    for group, (first_parts, second_parts) in _NAMES.items():
        rng = random.Random(f"chorus-demo-people-{group}")  # noqa: S311 - made-up content, seeded
        combos = [(a, b) for a in first_parts for b in second_parts if a[-1] not in b]  # no "白慕白"
        rng.shuffle(combos)
        joiner = "·" if group == "west" else ""
        pool = []
        for a, b in combos[:_PEOPLE_PER_GROUP]:
            pool.append(Person(f"{a}{joiner}{b}", str(next_id)))
            next_id += 1
        pools[group] = tuple(pool)
    return pools


def source_id(index: int) -> str:
    return str(FIRST_SUBJECT_ID + index)


def cover_path(subject_id: str) -> str:
    return COVER_PATH.format(source_id=subject_id)


@functools.cache
def _subjects() -> tuple[Subject, ...]:
    show_seasons: dict[str, list[str]] = {}
    for index, title in enumerate(TITLES):
        if title.show:
            show_seasons.setdefault(title.show, []).append(source_id(index))
    subjects = []
    first_release: date | None = None
    for index, title in enumerate(TITLES):
        rng = random.Random(f"chorus-demo-title-{source_id(index)}")  # noqa: S311 - made-up content, seeded
        if title.show and title.season and title.season > 1 and first_release is not None:
            first = first_release + timedelta(days=rng.randint(330, 400))  # a later season: about a year on
        else:
            first = EARLIEST + timedelta(days=rng.randint(0, (LATEST - EARLIEST).days - 60))
        if title.show and title.season == 1:
            first_release = first
        subjects.append(_subject(index, title, rng, first, show_seasons.get(title.show, [])))
    return tuple(subjects)


def _subject(index: int, title: DemoTitle, rng: random.Random, first: date, seasons: list[str]) -> Subject:
    sid = source_id(index)
    pool = people()[group_of(title.countries)]
    picked = rng.sample(pool, 9)
    directors = picked[:rng.choice((1, 1, 2))]
    writers = [*directors[:1], *picked[2:2 + rng.randint(1, 2)]]
    cast = picked[4:4 + rng.randint(4, 5)]
    releases = _releases(title, rng, first)
    years = [int(release[:4]) for release in releases]
    rating = round(rng.uniform(5.6, 9.3), 1)
    subject = Subject(
        source_id=sid, title=title.title, kind=title.kind, original_title=title.original_title, year=min(years),
        directors=list(directors), writers=writers, cast=cast, genres=list(title.genres),
        countries=list(title.countries), languages=list(title.languages), releases=releases,
        other_titles=[*([title.english] if title.english != title.original_title else []), *title.aka],
        imdb_id=f"tt{99000000 + index + 1}", synopsis=title.synopsis,
        long_synopsis=_long_synopsis(title, rng, cast) if index % 3 != 2 else "",
        rating=f"{rating:.1f}", votes=str(rng.randint(800, 420000)), cover=cover_path(sid),
    )
    if title.kind == "tv":
        subject.seasons = seasons or [sid]
        subject.episode_count = rng.choice((6, 8, 10, 12, 16, 24, 30))
        subject.episode_runtime = rng.choice(("45分钟", "约45分钟", "52分钟", "30分钟", "60分钟"))
    else:
        minutes = rng.randint(86, 158)
        subject.runtime = (f"{minutes}分钟 / {minutes + rng.randint(8, 20)}分钟(导演剪辑版)" if index % 7 == 3
                           else f"约{minutes}分钟" if index % 7 == 5 else f"{minutes}分钟")
    return subject


def _releases(title: DemoTitle, rng: random.Random, first: date) -> list[str]:
    """Douban's release lines, in its order (home country first): a festival premiere for some
    films, the home release, and a mainland release for a foreign one."""
    home = title.countries[0]
    if title.kind == "tv":
        return [f"{first.isoformat()}({home})"]
    lines = []
    festival = rng.random() < 0.5
    home_day = first + timedelta(days=rng.randint(30, 120)) if festival else first
    lines.append(f"{home_day.isoformat()}({home})")
    if festival:
        lines.append(f"{first.isoformat()}({rng.choice(_FESTIVALS)})")
    if home != "中国大陆":
        lines.append(f"{(home_day + timedelta(days=rng.randint(10, 90))).isoformat()}(中国大陆)")
    return lines


def _long_synopsis(title: DemoTitle, rng: random.Random, cast: list[Person]) -> str:
    names = [person.name for person in cast]
    sentences = [_LONG_TEMPLATES[i] for i in sorted(rng.sample(range(len(_LONG_TEMPLATES)), 3))]  # the ending last
    filled = [sentence.format(a=names[0], b=names[1], c=names[2], n=rng.randint(3, 6), place=rng.choice(_PLACES))
              for sentence in sentences]
    return title.synopsis + "\n" + "".join(filled[:2]) + "\n" + filled[2]


def subjects(*, origin: str) -> list[Subject]:
    """Every demo subject, newest first, with its cover on `origin` (the server's own root)."""
    built = [replace(subject, cover=origin + subject.cover) for subject in _subjects()]
    return sorted(built, key=lambda subject: (min(subject.releases), subject.source_id), reverse=True)


def english_name(subject_id: str) -> str:
    """The English name of a subject (its cover's initials), "" for no demo subject."""
    offset = int(subject_id) - FIRST_SUBJECT_ID if subject_id.isdigit() else -1
    return TITLES[offset].english if 0 <= offset < len(TITLES) else ""



def demo_ids() -> list[str]:
    """Every demo subject's Douban id."""
    return [source_id(index) for index in range(len(TITLES))]


def subject(index: int) -> Subject:
    """One demo subject by its place in TITLES (its cover path not yet on a server)."""
    return _subjects()[index]
