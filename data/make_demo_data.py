#!/usr/bin/env python3
"""Generate the synthetic Chinese NER sample in data/demo/ (BIO, one character per line).

Everything here is original to this repository: the sentence templates and word lists are written below and the
output is produced from them with a fixed random seed, so running the script twice gives byte-identical files.
Standard library only.

    python3 data/make_demo_data.py            # writes data/demo/{train,dev,test}.txt and prints counts
    python3 data/make_demo_data.py --out DIR  # write somewhere else

Output format: one line per character, ``<char> <tag>`` (a single ASCII space), a blank line after every sentence,
UTF-8, LF. Tags: O, B-PER, I-PER, B-LOC, I-LOC, B-ORG, I-ORG. A few sentences contain a full-width space
(U+3000) as a token; its line is ``\u3000 O``. Python's ``str.split()`` and ``str.strip()`` treat U+3000 as
whitespace, so read lines with ``line.rstrip("\\n").rsplit(" ", 1)``.

Dev and test draw about half of their entity mentions from a held-out quarter of every word list, which train never
sees, so their scores measure more than memorised strings. No sentence text occurs in more than one split.
"""

import argparse
import os
import random
import re
import sys
from collections import Counter


SEED = 20240611
SIZES = {"train": 600, "dev": 120, "test": 120}
HOLDOUT_FRACTION = 0.25  # of every word list, for dev/test only
HELDOUT_PICK_PROB = 0.5  # in dev/test, chance an entity slot takes a held-out string
MIN_LEN, MAX_LEN = 10, 60  # sentence length in characters (tokens)

# Messiness, applied per sentence after rendering (each independently).
P_FULLWIDTH = 0.10  # ASCII letters/digits/% -> full-width (only sentences that have some); e.g. ２０２４年, ＡＩ
P_HALFWIDTH_PUNCT = 0.04  # full-width ，：！？；（） -> half-width , : ! ? ; ( )
P_IDEOGRAPHIC_SPACE = 0.04  # insert one U+3000 token at a word boundary outside any entity

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
IDEOGRAPHIC_SPACE = "\u3000"

# --------------------------------------------------------------------------------------------------------------
# Word lists. Person names are built from surname + given name; companies, hospitals and sports teams are
# invented; provinces, cities, countries, rivers, mountains, universities and ministries are real place and
# institution names used as plain vocabulary.
# --------------------------------------------------------------------------------------------------------------

SURNAMES = [
    "王",
    "李",
    "张",
    "刘",
    "陈",
    "杨",
    "赵",
    "黄",
    "周",
    "吴",
    "徐",
    "孙",
    "胡",
    "朱",
    "高",
    "林",
    "何",
    "郭",
    "马",
    "罗",
    "梁",
    "宋",
    "郑",
    "谢",
    "韩",
    "唐",
    "冯",
    "董",
    "程",
    "曹",
    "袁",
    "邓",
    "许",
    "沈",
    "彭",
    "吕",
    "欧阳",
    "司马",
    "上官",
    "诸葛",
]
GIVEN_NAMES = [
    "伟",
    "芳",
    "敏",
    "静",
    "磊",
    "军",
    "洋",
    "勇",
    "杰",
    "涛",
    "超",
    "华",
    "琳",
    "鹏",
    "婷",
    "斌",
    "建国",
    "晓东",
    "子涵",
    "雨桐",
    "浩然",
    "思远",
    "欣怡",
    "俊杰",
    "嘉怡",
    "志强",
    "婉清",
    "一鸣",
    "梓萱",
    "文博",
    "海峰",
    "晨曦",
    "若兰",
    "天佑",
    "佳琪",
    "立新",
    "淑珍",
    "家豪",
    "雪梅",
    "国栋",
    "慧敏",
    "宇航",
    "诗雨",
    "振宇",
    "春生",
    "明远",
    "秋月",
    "德胜",
    "小满",
    "安然",
]
N_CHINESE_NAMES = 80
FOREIGN_NAMES = ["玛丽亚·洛佩兹", "汤姆·哈里斯", "卡尔·施密特", "娜塔莎·伊万诺娃", "山田一郎", "阿米尔·汗巴"]

LOC_LISTS = {
    "PROV": [
        "广东",
        "浙江",
        "四川",
        "湖南",
        "山东",
        "河南",
        "云南",
        "江苏",
        "福建",
        "陕西",
        "黑龙江",
        "新疆",
        "内蒙古",
        "贵州",
        "甘肃",
        "海南",
    ],
    "CITY": [
        "北京",
        "上海",
        "广州",
        "深圳",
        "杭州",
        "成都",
        "武汉",
        "西安",
        "南京",
        "重庆",
        "厦门",
        "长沙",
        "青岛",
        "昆明",
        "哈尔滨",
        "苏州",
        "大连",
        "拉萨",
        "桂林",
        "兰州",
    ],
    "COUNTRY": [
        "日本",
        "法国",
        "德国",
        "巴西",
        "埃及",
        "澳大利亚",
        "加拿大",
        "意大利",
        "新加坡",
        "泰国",
        "俄罗斯",
        "肯尼亚",
        "阿根廷",
    ],
    "MOUNTAIN": ["泰山", "黄山", "峨眉山", "华山", "天山", "秦岭", "武夷山", "长白山"],
    "WATER": ["长江", "黄河", "珠江", "澜沧江", "漓江", "洞庭湖", "鄱阳湖", "西湖", "青海湖"],
}
ORG_LISTS = {
    "COMPANY": [
        "星河科技有限公司",
        "华远集团",
        "北辰电子",
        "青松食品股份有限公司",
        "蓝海航运",
        "远帆物流",
        "金穗农业发展公司",
        "云图软件",
        "恒信银行",
        "启明汽车",
        "嘉禾乳业",
        "天衡证券",
        "瑞丰医药",
        "海川能源集团",
        "鼎盛建设",
        "华声传媒",
    ],
    "UNIV": [
        "北京大学",
        "清华大学",
        "复旦大学",
        "浙江大学",
        "武汉大学",
        "南开大学",
        "中山大学",
        "四川大学",
        "厦门大学",
        "同济大学",
        "兰州大学",
        "哈尔滨工业大学",
    ],
    "GOV": [
        "教育部",
        "外交部",
        "财政部",
        "交通运输部",
        "生态环境部",
        "国家统计局",
        "商务部",
        "文化和旅游部",
        "中国气象局",
        "应急管理部",
        "水利部",
        "国家卫生健康委员会",
    ],
    "HOSP": [
        "仁和医院",
        "安康妇幼保健院",
        "东方肿瘤医院",
        "博爱康复医院",
        "济民中医院",
        "明德口腔医院",
        "惠民社区卫生服务中心",
        "长青骨科医院",
    ],
    "TEAM": [
        "江城雄狮足球俱乐部",
        "海港飞鱼篮球队",
        "北国冰狼冰球队",
        "南岭猛虎足球队",
        "星城火箭篮球俱乐部",
        "东湖龙舟队",
        "蓉城熊猫足球俱乐部",
        "沿海之星排球队",
    ],
    "INST": ["联合国", "世界卫生组织", "中国科学院", "中国红十字会", "国际奥委会", "新华社"],
}

# Slot name -> (entity type, word-list keys it draws from). A digit after a slot name ({CITY2}) asks for a
# different string of the same kind within the sentence.
ENTITY_SLOTS = {
    "PER": ("PER", ["PER"]),
    "PROV": ("LOC", ["PROV"]),
    "CITY": ("LOC", ["CITY"]),
    "COUNTRY": ("LOC", ["COUNTRY"]),
    "MOUNTAIN": ("LOC", ["MOUNTAIN"]),
    "WATER": ("LOC", ["WATER"]),
    "LOC": ("LOC", ["PROV", "CITY", "COUNTRY"]),
    "COMPANY": ("ORG", ["COMPANY"]),
    "UNIV": ("ORG", ["UNIV"]),
    "GOV": ("ORG", ["GOV"]),
    "HOSP": ("ORG", ["HOSP"]),
    "TEAM": ("ORG", ["TEAM"]),
    "INST": ("ORG", ["INST"]),
    "ORG": ("ORG", ["COMPANY", "UNIV", "INST"]),
}

# Filler slots: tagged O. Each is a function of the random generator.
CN_SMALL = ["两", "三", "四", "五", "六", "七", "八", "十"]
WEEKDAYS = ["周一", "周二", "周三", "周四", "周五", "周六", "周日", "星期六", "明天", "这周末", "下周三"]
FOODS = ["牛肉面", "小笼包", "烤鱼", "酸辣粉", "豆腐脑", "煎饼", "饺子", "米线", "蛋炒饭", "凉皮", "羊肉串"]
TASKS = ["防汛抗旱", "安全生产", "垃圾分类", "冬季供暖", "食品安全", "森林防火", "春运保障"]
FILLERS = {
    "YEAR": lambda r: str(r.randint(2015, 2025)),
    "MONTH": lambda r: str(r.randint(1, 12)),
    "DAY": lambda r: str(r.randint(1, 28)),
    "HOUR": lambda r: str(r.randint(1, 11)),
    "NUM": lambda r: str(r.choice([r.randint(100, 999), r.randint(1000, 9999), r.randint(12, 99)])),
    "NUMS": lambda r: str(r.randint(5, 60)),
    "PCT": lambda r: r.choice([str(r.randint(2, 40)), "%d.%d" % (r.randint(0, 15), r.randint(1, 9))]),
    "CN": lambda r: r.choice(CN_SMALL),
    "SCORE": lambda r: r.choice(["%d比%d", "%d：%d", "%d:%d"]) % (r.randint(2, 5), r.randint(0, 1)),
    "WEEKDAY": lambda r: r.choice(WEEKDAYS),
    "FOOD": lambda r: r.choice(FOODS),
    "TASK": lambda r: r.choice(TASKS),
}

# --------------------------------------------------------------------------------------------------------------
# Templates (style, text). Written for this repository. Some have no entity at all.
# --------------------------------------------------------------------------------------------------------------

TEMPLATES = [
    # news
    ("news", "{YEAR}年{MONTH}月{DAY}日，{GOV}在{CITY}召开新闻发布会，介绍今年的工作进展。"),
    ("news", "据{INST}报道，{PROV}部分地区近日出现强降雨，当地已启动应急响应。"),
    ("news", "{PER}表示，{COMPANY}将在{CITY}投资建设一座新的研发中心。"),
    ("news", "记者从{GOV}获悉，{PROV}今年一季度GDP同比增长{PCT}%。"),
    ("news", "{COUNTRY}与{COUNTRY2}的外长于本周举行会谈，双方同意加强经贸往来。"),
    ("news", "{CITY}市民{PER}在路边捡到一个钱包，第一时间交给了民警。"),
    ("news", "{INST}{MONTH}月{DAY}日发布消息称，{COUNTRY}将主办明年的国际会议。"),
    ("news", "【快讯】{TEAM}晋级决赛！"),
    ("news", "受台风影响，{CITY}至{CITY2}的航班今天全部取消。"),
    ("news", "今天{CITY}的PM2.5指数达到{NUM}，建议市民减少户外活动。"),
    # business
    ("business", "{COMPANY}今天发布年度财报，全年营收达到{NUM}亿元。"),
    ("business", "{COMPANY}与{COMPANY2}签署战略合作协议，双方将在{CITY}共建AI实验室。"),
    ("business", "{COMPANY}CEO{PER}在发布会上宣布推出新款App。"),
    ("business", "受原材料价格上涨影响，{COMPANY}股价当天下跌{PCT}%。"),
    ("business", "{PER}从{UNIV}毕业后加入{COMPANY}，现任技术总监。"),
    ("business", "{COMPANY}计划明年在{COUNTRY}开设第一家海外门店。"),
    ("business", "分析师认为，{COMPANY}的5G业务仍有较大的增长空间。"),
    ("business", "{COMPANY}的总部位于{CITY}，员工超过{NUM}人。"),
    ("business", "{PER}用email给{COMPANY}的客服反映了这个问题。"),
    ("business", "价格从{NUM}元降到了{NUMS}元，这次的优惠力度确实很大。"),
    # travel
    ("travel", "暑假我们一家人去{CITY}旅游，还顺路爬了{MOUNTAIN}。"),
    ("travel", "从{CITY}坐高铁到{CITY2}只需要{HOUR}个小时左右。"),
    ("travel", "{WATER}沿岸的风景非常美，每年都吸引大量游客前来观光。"),
    ("travel", "听说{PROV}的{FOOD}特别有名，下次去一定要尝尝。"),
    ("travel", "这次去{COUNTRY}自由行，我们在当地一共住了{CN}天。"),
    ("travel", "{MOUNTAIN}的日出是我见过最壮观的景色！"),
    ("travel", "请问去{MOUNTAIN}景区的大巴几点发车？"),
    ("travel", "导游{PER}带着我们沿着{WATER}走了整整一个下午。"),
    ("travel", "APP上显示，从这里步行到{WATER}边大约需要{NUMS}分钟。"),
    ("travel", "{PER}说：“我从小就梦想去{COUNTRY}看看。”"),
    # sports
    ("sports", "在昨晚的比赛中，{TEAM}以{SCORE}战胜了{TEAM2}。"),
    ("sports", "{PER}在全国游泳锦标赛上打破了{PROV}纪录。"),
    ("sports", "{TEAM}主教练{PER}赛后接受了记者的采访。"),
    ("sports", "本届马拉松比赛在{CITY}举行，共有{NUM}名选手参加。"),
    ("sports", "{PER}和{PER2}搭档，获得了混合双打冠军。"),
    ("sports", "{TEAM}宣布与前锋{PER}续约{CN}年。"),
    ("sports", "来自{PROV}的{PER}、{CITY}的{PER2}和{COUNTRY}的{PER3}一同登上了领奖台。"),
    ("sports", "比赛第{NUMS}分钟，主队利用角球机会扳平了比分。"),
    # daily life
    ("daily", "天气预报说{WEEKDAY}不下雨，我们下午去公园散步吧。"),
    ("daily", "我妈妈在{HOSP}当护士，已经工作二十多年了。"),
    ("daily", "{PER}，你明天记得把作业带来。"),
    ("daily", "{WEEKDAY}我和{PER}约好了一起去看电影。"),
    ("daily", "这家店的{FOOD}真好吃，价格也不贵。"),
    ("daily", "我的手机只剩{PCT}%的电了，能借一下充电器吗？"),
    ("daily", "楼下超市晚上{HOUR}点就关门了，要买东西得抓紧。"),
    ("daily", "{PER}的女儿今年考上了{UNIV}，全家人都很高兴。"),
    ("daily", "{WEEKDAY}晚上小区的Wi-Fi又断了，已经打电话报修。"),
    ("daily", "爷爷上个月在{HOSP}做了手术，现在恢复得很好。"),
    ("daily", "你知道{CITY}这几天的天气怎么样吗？"),
    ("daily", "{PER}是{HOSP}心内科的主任医师，擅长治疗高血压。"),
    ("daily", "我点了一份{FOOD}和一杯奶茶，一共{NUMS}块钱。"),
    # government
    ("gov", "{GOV}近日印发通知，要求各地认真做好{TASK}工作。"),
    ("gov", "{PROV}与{UNIV}签署了人才培养合作协议。"),
    ("gov", "{GOV}负责人{PER}前往{CITY}考察调研。"),
    ("gov", "根据{GOV}的数据，{YEAR}年全国粮食产量再创新高。"),
    ("gov", "{GOV}提醒广大市民：节假日出行请注意安全。"),
    ("gov", "{CITY}将新建{CN}条地铁线路，预计{YEAR}年全部通车。"),
    ("gov", "{INST}专家{PER}指出，{WATER}流域的生态保护仍面临挑战。"),
    ("gov", "今年{MONTH}月，{COUNTRY}代表团访问了{PROV}，并参观了{ORG}。"),
    ("gov", "会议要求，各地要把{TASK}工作落到实处，确保不出问题。"),
    # science / education / misc
    ("misc", "{UNIV}的研究团队在{COUNTRY}发现了一种新的植物。"),
    ("misc", "{PER}（{UNIV}教授）认为人工智能将深刻改变教育行业。"),
    ("misc", "{PER}在{HOSP}成功完成了一例高难度手术。"),
    ("misc", "会议将于下午{HOUR}点准时开始，请大家提前{NUMS}分钟到场。"),
    ("misc", "这个问题我们{WEEKDAY}开会再讨论，请先准备好PPT。"),
    ("misc", "{YEAR}年是公司成立以来最艰难的一年。"),
    ("misc", "{ORG}和{ORG2}联合发布了一份关于{LOC}气候变化的报告。"),
    ("misc", "{PER}在{LOC}出差期间，顺便拜访了老同学{PER2}。"),
]

SLOT_RE = re.compile(r"\{([A-Z]+)(\d?)\}")


# --------------------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------------------


def build_word_lists(rng):
    """Return {key: list of strings}, PER included, every list in a deterministic order."""
    names = []
    seen = set()
    while len(names) < N_CHINESE_NAMES:
        name = rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES)
        if name not in seen:
            seen.add(name)
            names.append(name)
    lists = {"PER": names + FOREIGN_NAMES}
    lists.update({k: list(v) for k, v in LOC_LISTS.items()})
    lists.update({k: list(v) for k, v in ORG_LISTS.items()})
    return lists


def split_word_lists(lists, rng):
    """Hold out ~25% of every list (at least one string) for dev/test. Returns (train_pool, heldout_pool)."""
    train, held = {}, {}
    for key, words in lists.items():
        shuffled = list(words)
        rng.shuffle(shuffled)
        n_held = max(1, round(len(shuffled) * HOLDOUT_FRACTION))
        held[key] = sorted(shuffled[:n_held], key=words.index)
        train[key] = sorted(shuffled[n_held:], key=words.index)
    return train, held


def pick_entity(rng, slot, train_pool, held_pool, use_heldout, exclude):
    etype, keys = ENTITY_SLOTS[slot]
    pool = held_pool if use_heldout and rng.random() < HELDOUT_PICK_PROB else train_pool
    candidates = [w for k in keys for w in pool[k] if w not in exclude]
    if not candidates:  # fall back to the train pool if the held-out one is exhausted for this sentence
        candidates = [w for k in keys for w in train_pool[k] if w not in exclude]
    return etype, rng.choice(candidates)


def render(template, rng, train_pool, held_pool, use_heldout):
    """Fill a template. Returns (list of (char, tag), set of indices where a slot starts or ends)."""
    tokens = []
    bounds = set()
    used = set()
    pos = 0
    for m in SLOT_RE.finditer(template):
        tokens.extend((c, "O") for c in template[pos : m.start()])
        bounds.add(len(tokens))
        slot = m.group(1)
        if slot in ENTITY_SLOTS:
            etype, text = pick_entity(rng, slot, train_pool, held_pool, use_heldout, used)
            used.add(text)
            tokens.extend((c, ("B-" if i == 0 else "I-") + etype) for i, c in enumerate(text))
        elif slot in FILLERS:
            tokens.extend((c, "O") for c in FILLERS[slot](rng))
        else:
            raise KeyError("unknown slot {%s} in template %r" % (slot, template))
        pos = m.end()
        bounds.add(len(tokens))
    tokens.extend((c, "O") for c in template[pos:])
    return tokens, bounds


def to_fullwidth(ch):
    if ch.isascii() and (ch.isalnum() or ch == "%"):
        return chr(ord(ch) + 0xFEE0)
    return ch


HALF_PUNCT = {"，": ",", "：": ":", "！": "!", "？": "?", "；": ";", "（": "(", "）": ")"}


PUNCT = set("，。：；！？、（）【】“”《》,.:;!?()")


def add_mess(tokens, bounds, rng):
    """Apply the random noise described at the top. Tags never change; at most one token is inserted.

    Returns (tokens, set of the kinds of noise applied)."""
    kinds = set()
    if any(c.isascii() and c.isalnum() for c, _ in tokens) and rng.random() < P_FULLWIDTH:
        tokens = [(to_fullwidth(c), t) for c, t in tokens]
        kinds.add("fullwidth_alnum")
    if any(c in HALF_PUNCT for c, _ in tokens) and rng.random() < P_HALFWIDTH_PUNCT:
        tokens = [(HALF_PUNCT.get(c, c), t) for c, t in tokens]
        kinds.add("halfwidth_punct")
    if rng.random() < P_IDEOGRAPHIC_SPACE:
        # Word boundaries: where a slot starts or ends, or right after punctuation (never first or last, and
        # never inside an entity).
        spots = [
            i
            for i in range(1, len(tokens))
            if (i in bounds or tokens[i - 1][0] in PUNCT) and not tokens[i][1].startswith("I-")
        ]
        if spots:
            i = rng.choice(spots)
            tokens = tokens[:i] + [(IDEOGRAPHIC_SPACE, "O")] + tokens[i:]
            kinds.add("ideographic_space")
    return tokens, kinds


def generate_split(name, n, rng, train_pool, held_pool, seen_texts):
    """n distinct sentences whose text is not in seen_texts (which is updated). Returns (sentences, noise counts)."""
    use_heldout = name != "train"
    sentences = []
    stats = Counter()
    attempts = 0
    while len(sentences) < n:
        attempts += 1
        if attempts > 200 * n:
            raise RuntimeError("could not generate %d distinct sentences for %s" % (n, name))
        _style, template = rng.choice(TEMPLATES)
        tokens, bounds = render(template, rng, train_pool, held_pool, use_heldout)
        tokens, kinds = add_mess(tokens, bounds, rng)
        text = "".join(c for c, _ in tokens)
        if not (MIN_LEN <= len(tokens) <= MAX_LEN) or text in seen_texts:
            continue
        seen_texts.add(text)
        sentences.append(tokens)
        stats.update(kinds)
    return sentences, stats


def write_split(path, sentences):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for tokens in sentences:
            for c, t in tokens:
                f.write("%s %s\n" % (c, t))
            f.write("\n")


# --------------------------------------------------------------------------------------------------------------
# Reading back and checking
# --------------------------------------------------------------------------------------------------------------


def read_split(path):
    """Read a file written by write_split. Splits each line on its last ASCII space (U+3000 tokens survive)."""
    sentences, cur = [], []
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.endswith("\n") or raw.endswith("\r\n"):
                raise ValueError("%s:%d: line does not end with LF" % (path, lineno))
            line = raw[:-1]
            if line == "":
                if not cur:
                    raise ValueError("%s:%d: empty sentence / stray blank line" % (path, lineno))
                sentences.append(cur)
                cur = []
                continue
            parts = line.rsplit(" ", 1)
            if len(parts) != 2:
                raise ValueError("%s:%d: expected '<char> <tag>': %r" % (path, lineno, line))
            ch, tag = parts
            if len(ch) != 1 or ch == " " or ch in "\t\r\n":
                raise ValueError("%s:%d: token must be one non-ASCII-space character: %r" % (path, lineno, ch))
            if tag not in LABELS:
                raise ValueError("%s:%d: unknown tag %r" % (path, lineno, tag))
            cur.append((ch, tag))
    if cur:
        raise ValueError("%s: last sentence is not followed by a blank line" % path)
    return sentences


def entities(tokens):
    """BIO spans as (type, text). Raises on an I- that does not continue an entity of the same type."""
    spans, cur_type, cur_text = [], None, ""
    for c, t in tokens:
        if t.startswith("I-"):
            if cur_type != t[2:]:
                raise ValueError(
                    "ill-formed BIO: %s after %s in %r"
                    % (t, "O" if cur_type is None else cur_type, "".join(x for x, _ in tokens))
                )
            cur_text += c
            continue
        if cur_type is not None:
            spans.append((cur_type, cur_text))
        cur_type, cur_text = (t[2:], c) if t.startswith("B-") else (None, "")
    if cur_type is not None:
        spans.append((cur_type, cur_text))
    return spans


def summarize(out_dir):
    splits = {}
    for name in SIZES:
        splits[name] = read_split(os.path.join(out_dir, name + ".txt"))
    texts = {name: {"".join(c for c, _ in s) for s in sents} for name, sents in splits.items()}
    for a in SIZES:
        for b in SIZES:
            if a < b and texts[a] & texts[b]:
                raise ValueError("splits %s and %s share %d sentences" % (a, b, len(texts[a] & texts[b])))
    train_strings = {span for s in splits["train"] for span in entities(s)}
    print(
        "%-6s %6s %7s %6s %5s %5s %5s %6s %8s %8s"
        % ("split", "sents", "tokens", "ents", "PER", "LOC", "ORG", "no-ent", "unseen", "lens")
    )
    rows = {}
    for name, sents in splits.items():
        counts = Counter()
        unseen = 0
        no_ent = 0
        for s in sents:
            spans = entities(s)
            no_ent += not spans
            for span in spans:
                counts[span[0]] += 1
                unseen += span not in train_strings
        lens = [len(s) for s in sents]
        rows[name] = counts
        print(
            "%-6s %6d %7d %6d %5d %5d %5d %6d %8s %8s"
            % (
                name,
                len(sents),
                sum(lens),
                sum(counts.values()),
                counts["PER"],
                counts["LOC"],
                counts["ORG"],
                no_ent,
                "-" if name == "train" else str(unseen),
                "%d-%d" % (min(lens), max(lens)),
            )
        )
    print("(unseen = entity mentions whose (type, string) never occurs in train)")
    return splits


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "demo"), help="output folder (default: data/demo)")
    args = ap.parse_args(argv)

    for style, t in TEMPLATES:
        assert " " not in t and "\t" not in t, "template contains ASCII whitespace: %r" % t
    assert len(TEMPLATES) >= 40

    rng = random.Random(SEED)
    lists = build_word_lists(rng)
    train_pool, held_pool = split_word_lists(lists, rng)
    for key in lists:
        for w in lists[key]:
            assert w and not any(ch.isspace() for ch in w), w

    os.makedirs(args.out, exist_ok=True)
    seen_texts = set()
    print(
        "word lists: %s" % ", ".join("%s %d (%d held out)" % (k, len(v), len(held_pool[k])) for k, v in lists.items())
    )
    print("templates: %d" % len(TEMPLATES))
    for name, n in SIZES.items():
        split_rng = random.Random("%d-%s" % (SEED, name))
        sentences, stats = generate_split(name, n, split_rng, train_pool, held_pool, seen_texts)
        write_split(os.path.join(args.out, name + ".txt"), sentences)
        print(
            "%s: noisy sentences: full-width alnum %d, half-width punct %d, U+3000 token %d"
            % (name, stats["fullwidth_alnum"], stats["halfwidth_punct"], stats["ideographic_space"])
        )
    summarize(args.out)
    print("wrote %s" % ", ".join(os.path.join(os.path.relpath(args.out), n + ".txt") for n in SIZES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
