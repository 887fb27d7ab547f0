"""Static vocabulary of the demo company: names, departments, fee types, remarks.

Everything here is plain data; the generator draws from it with a seeded RNG.
"""

from __future__ import annotations

from typing import Final

# (surname, pinyin, relative frequency) — the common surnames, roughly by how often they occur.
SURNAMES: Final[tuple[tuple[str, str, float], ...]] = (
    ("王", "wang", 7.1), ("李", "li", 7.0), ("张", "zhang", 6.7), ("刘", "liu", 5.4), ("陈", "chen", 4.6),
    ("杨", "yang", 3.1), ("黄", "huang", 2.4), ("赵", "zhao", 2.3), ("吴", "wu", 2.1), ("周", "zhou", 2.1),
    ("徐", "xu", 1.7), ("孙", "sun", 1.5), ("马", "ma", 1.5), ("朱", "zhu", 1.4), ("胡", "hu", 1.3),
    ("郭", "guo", 1.3), ("何", "he", 1.2), ("林", "lin", 1.2), ("罗", "luo", 1.1), ("高", "gao", 1.1),
    ("郑", "zheng", 1.0), ("梁", "liang", 1.0), ("谢", "xie", 0.9), ("宋", "song", 0.9), ("唐", "tang", 0.9),
    ("许", "xu", 0.8), ("韩", "han", 0.8), ("冯", "feng", 0.8), ("邓", "deng", 0.8), ("曹", "cao", 0.7),
    ("彭", "peng", 0.7), ("曾", "zeng", 0.7), ("肖", "xiao", 0.7), ("田", "tian", 0.6), ("董", "dong", 0.6),
    ("袁", "yuan", 0.6), ("潘", "pan", 0.6), ("于", "yu", 0.6), ("蒋", "jiang", 0.6), ("蔡", "cai", 0.6),
    ("余", "yu", 0.5), ("杜", "du", 0.5), ("叶", "ye", 0.5), ("程", "cheng", 0.5), ("苏", "su", 0.5),
    ("魏", "wei", 0.5), ("吕", "lv", 0.5), ("丁", "ding", 0.5), ("任", "ren", 0.5), ("沈", "shen", 0.5),
    ("姚", "yao", 0.4), ("卢", "lu", 0.4), ("姜", "jiang", 0.4), ("崔", "cui", 0.4), ("钟", "zhong", 0.4),
    ("谭", "tan", 0.4), ("陆", "lu", 0.4), ("汪", "wang", 0.4), ("范", "fan", 0.4), ("金", "jin", 0.4),
    ("石", "shi", 0.4), ("廖", "liao", 0.4), ("贾", "jia", 0.3), ("夏", "xia", 0.3), ("韦", "wei", 0.3),
    ("付", "fu", 0.3), ("方", "fang", 0.3), ("白", "bai", 0.3), ("邹", "zou", 0.3), ("孟", "meng", 0.3),
    ("熊", "xiong", 0.3), ("秦", "qin", 0.3), ("邱", "qiu", 0.3), ("江", "jiang", 0.3), ("尹", "yin", 0.3),
    ("薛", "xue", 0.3), ("闫", "yan", 0.3), ("段", "duan", 0.3), ("雷", "lei", 0.3), ("侯", "hou", 0.3),
    ("龙", "long", 0.3), ("史", "shi", 0.3), ("陶", "tao", 0.2), ("黎", "li", 0.2), ("贺", "he", 0.2),
    ("顾", "gu", 0.2), ("毛", "mao", 0.2), ("郝", "hao", 0.2), ("龚", "gong", 0.2), ("邵", "shao", 0.2),
    ("万", "wan", 0.2), ("钱", "qian", 0.2), ("严", "yan", 0.2), ("武", "wu", 0.2), ("戴", "dai", 0.2),
    ("莫", "mo", 0.2), ("孔", "kong", 0.2), ("向", "xiang", 0.2), ("汤", "tang", 0.2), ("欧阳", "ouyang", 0.05),
    ("司马", "sima", 0.01), ("上官", "shangguan", 0.01), ("诸葛", "zhuge", 0.01),
)  # fmt: skip

# Characters used in given names, with their pinyin.
GIVEN_CHARS: Final[tuple[tuple[str, str], ...]] = (
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"), ("强", "qiang"),
    ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("娟", "juan"),
    ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀", "xiu"), ("霞", "xia"), ("平", "ping"), ("刚", "gang"),
    ("桂", "gui"), ("英", "ying"), ("华", "hua"), ("玉", "yu"), ("萍", "ping"), ("红", "hong"), ("鹏", "peng"),
    ("辉", "hui"), ("建", "jian"), ("文", "wen"), ("斌", "bin"), ("宇", "yu"), ("浩", "hao"), ("凯", "kai"),
    ("健", "jian"), ("俊", "jun"), ("帆", "fan"), ("帅", "shuai"), ("旭", "xu"), ("宁", "ning"), ("龙", "long"),
    ("林", "lin"), ("欣", "xin"), ("雪", "xue"), ("琳", "lin"), ("晶", "jing"), ("婷", "ting"), ("颖", "ying"),
    ("倩", "qian"), ("丹", "dan"), ("佳", "jia"), ("慧", "hui"), ("莉", "li"), ("梅", "mei"), ("雨", "yu"),
    ("晨", "chen"), ("阳", "yang"), ("瑶", "yao"), ("琪", "qi"), ("璐", "lu"), ("博", "bo"), ("子", "zi"),
    ("梓", "zi"), ("轩", "xuan"), ("涵", "han"), ("睿", "rui"), ("思", "si"), ("嘉", "jia"), ("怡", "yi"),
    ("欢", "huan"), ("志", "zhi"), ("海", "hai"), ("峰", "feng"), ("波", "bo"), ("宏", "hong"), ("亮", "liang"),
    ("成", "cheng"), ("国", "guo"), ("家", "jia"), ("东", "dong"), ("晓", "xiao"), ("小", "xiao"), ("新", "xin"),
    ("立", "li"), ("永", "yong"), ("春", "chun"), ("秋", "qiu"), ("云", "yun"), ("飞", "fei"), ("鑫", "xin"),
    ("蕾", "lei"), ("薇", "wei"), ("诗", "shi"), ("雅", "ya"), ("悦", "yue"), ("一", "yi"), ("天", "tian"),
    ("若", "ruo"), ("晗", "han"), ("泽", "ze"), ("振", "zhen"), ("良", "liang"), ("德", "de"), ("荣", "rong"),
    ("清", "qing"), ("淑", "shu"), ("兰", "lan"), ("凤", "feng"), ("洁", "jie"), ("燕", "yan"), ("彬", "bin"),
    ("毅", "yi"), ("昊", "hao"), ("然", "ran"), ("可", "ke"), ("心", "xin"), ("安", "an"), ("乐", "le"),
)  # fmt: skip

EMAIL_DOMAIN: Final = "huaxin-tech.cn"

# The department tree: (code, name, parent code). Codes are the cross-system key (OA departmentmark).
DEPARTMENTS: Final[tuple[tuple[str, str, str | None], ...]] = (
    ("HQ-00", "总部", None),
    ("FIN-01", "财务部", "HQ-00"),
    ("HR-01", "人力资源部", "HQ-00"),
    ("ADM-01", "行政部", "HQ-00"),
    ("IT-01", "信息技术部", "HQ-00"),
    ("LEG-01", "法务部", "HQ-00"),
    ("MKT-01", "市场部", "HQ-00"),
    ("PUR-01", "采购部", "HQ-00"),
    ("SAL-00", "销售中心", "HQ-00"),
    ("SAL-01", "销售一部", "SAL-00"),
    ("SAL-02", "销售二部", "SAL-00"),
    ("SAL-03", "销售三部", "SAL-00"),
    ("KA-01", "大客户部", "SAL-00"),
    ("RD-00", "研发中心", "HQ-00"),
    ("RD-01", "研发一部", "RD-00"),
    ("RD-02", "研发二部", "RD-00"),
    ("QA-01", "测试部", "RD-00"),
    ("OPS-01", "运维部", "RD-00"),
    ("EC-00", "华东大区", "SAL-00"),
    ("SH-01", "上海分公司", "EC-00"),
    ("HZ-01", "杭州分公司", "EC-00"),
    ("NJ-01", "南京办事处", "EC-00"),
    ("SC-00", "华南大区", "SAL-00"),
    ("GZ-01", "广州分公司", "SC-00"),
    ("SZ-01", "深圳分公司", "SC-00"),
    ("NC-00", "华北大区", "SAL-00"),
    ("BJ-01", "北京分公司", "NC-00"),
    ("TJ-01", "天津办事处", "NC-00"),
    ("SW-00", "西南大区", "SAL-00"),
    ("CD-01", "成都分公司", "SW-00"),
    ("CQ-01", "重庆办事处", "SW-00"),
    ("DG-01", "数据治理部", "HQ-00"),
)
# Disabled in OA (封存) and inactive in expense; only former employees remain there.
CANCELED_DEPARTMENT: Final = "PUR-01"
# Created in OA a day ago; the org sync has not copied it (or its people) to expense yet.
NEW_DEPARTMENT: Final = "DG-01"
FINANCE_DEPARTMENT: Final = "FIN-01"
ROOT_DEPARTMENT: Final = "HQ-00"
# Departments that grow teams (销售一部一组 …) when the company is large.
TEAM_PARENTS: Final = ("SAL-01", "SAL-02", "SAL-03", "KA-01", "RD-01", "RD-02", "SH-01", "GZ-01", "BJ-01")
TEAM_NUMERALS: Final = "一二三四五六七八九十"

# OA employee status (hrmresource.status) and how common each is. Active = status <= 3.
EMPLOYEE_STATUS_WEIGHTS: Final = (0.07, 0.74, 0.03, 0.01, 0.02, 0.09, 0.02, 0.02)

# Mainland mobile prefixes and 身份证 region codes (province/city/district).
MOBILE_PREFIXES: Final = (
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155", "156",
    "158", "159", "166", "173", "176", "177", "180", "181", "182", "183", "185", "186", "187", "188", "189", "199",
)  # fmt: skip
ID_REGIONS: Final = (
    "110101", "110105", "110108", "310101", "310104", "310115", "440103", "440106", "440305", "440304",
    "330102", "330106", "320102", "320106", "510104", "510107", "420102", "610103", "500103", "120101",
    "370202", "350203", "430102", "410105", "340104", "360102", "530102", "450103", "210102", "230102",
)  # fmt: skip
BANK_CARD_PREFIXES: Final = ("622202", "621700", "622848", "621226", "622588", "621483", "622609", "623668")

FEE_MAIN_WEIGHTS: Final = (0.35, 0.20, 0.12, 0.05, 0.10, 0.08, 0.10)  # index = position in rules.FEE_TYPES
# For each main fee type, which fee types its other lines have (same order as rules.FEE_TYPES).
FEE_LINE_WEIGHTS: Final = (
    (0.30, 0.25, 0.20, 0.25, 0.00, 0.00, 0.00),  # 差旅费 trip: tickets, taxis, meals, hotel
    (0.00, 0.85, 0.15, 0.00, 0.00, 0.00, 0.00),  # 交通费
    (0.00, 0.20, 0.80, 0.00, 0.00, 0.00, 0.00),  # 餐费
    (0.00, 0.20, 0.10, 0.70, 0.00, 0.00, 0.00),  # 住宿费
    (0.00, 0.10, 0.00, 0.00, 0.90, 0.00, 0.00),  # 办公用品
    (0.00, 0.00, 0.00, 0.00, 0.00, 1.00, 0.00),  # 通讯费
    (0.00, 0.25, 0.15, 0.00, 0.00, 0.00, 0.60),  # 招待费
)
# Line amounts per fee type in yuan: (median, sigma of the log, minimum, maximum, whole yuan only).
FEE_AMOUNTS: Final[tuple[tuple[float, float, float, float, bool], ...]] = (
    (553.0, 0.70, 19.5, 6800.0, False),  # 差旅费
    (46.0, 0.80, 3.0, 880.0, False),  # 交通费
    (128.0, 0.70, 12.0, 1600.0, False),  # 餐费
    (468.0, 0.45, 120.0, 3200.0, True),  # 住宿费
    (236.0, 0.90, 6.8, 5200.0, False),  # 办公用品
    (129.0, 0.35, 30.0, 600.0, True),  # 通讯费
    (1260.0, 0.65, 150.0, 12000.0, True),  # 招待费
)
# Share of lines with no invoice (taxi receipts, per-diem meals …), per fee type.
FEE_NO_INVOICE: Final = (0.03, 0.25, 0.15, 0.02, 0.05, 0.10, 0.03)

CITIES: Final = (
    "北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "武汉", "西安", "重庆", "天津", "苏州", "长沙", "郑州",
    "青岛", "厦门",
)  # fmt: skip
CUSTOMERS: Final = ("中建材", "华润万家", "美的集团", "招商银行", "顺丰速运", "海康威视", "恒瑞医药", "宁德时代")


def remark_templates() -> tuple[tuple[str, ...], ...]:
    """Line remarks (说明) per fee type, in rules.FEE_TYPES order."""
    pairs = [(a, b) for a in CITIES[:8] for b in CITIES if a != b][:40]
    travel = tuple(f"{a}-{b} 高铁二等座" for a, b in pairs[:24]) + tuple(f"{a}-{b} 机票经济舱" for a, b in pairs[24:])
    transport = (
        "市内打车", "出租车 公司-客户现场", "网约车 机场-酒店", "网约车 高铁站-公司", "地铁交通卡充值", "加班打车回家",
        "停车费", "高速通行费",
    )  # fmt: skip
    meals = ("出差餐费", "加班餐", "项目组工作餐", "出差期间早餐", "出差期间晚餐")
    hotel = tuple(f"{city} 酒店住宿" for city in CITIES)
    office = ("打印纸、文件夹", "硒鼓", "白板笔、便签", "键盘鼠标", "移动硬盘", "会议室投影转接头", "快递费")
    phone = tuple(f"{m}月手机话费" for m in range(1, 13))
    hosting = (*(f"客户招待（{c}）" for c in CUSTOMERS), "供应商来访接待", "项目验收答谢宴")
    return (travel, transport, meals, hotel, office, phone, hosting)


# OA approval comments (workflow_requestlog.remark) by log type.
APPROVE_REMARKS: Final = ("同意", "同意报销", "情况属实，同意", "已核对，同意", "同意，请财务审核")
SEND_BACK_REMARKS: Final = (
    "发票不全，请补充", "金额超出差旅标准，请核实", "请补充行程单", "费用类型有误，请修改", "招待费需附客户名单",
)  # fmt: skip
WITHDRAW_REMARKS: Final = ("信息填写有误，撤回修改", "漏传发票，撤回补充", "提交错了")
FORCE_ARCHIVE_REMARKS: Final = ("审批人离职，流程强制归档", "流程超时，财务强制归档")
COMMENT_REMARKS: Final = ("请尽快审批，谢谢", "已补充发票扫描件", "行程单见附件", "本次出差经总经理同意")

# Other OA workflows (not the expense form): (workflow id, name, requestmark prefix).
OTHER_WORKFLOWS: Final = ((37, "请假申请", "QJ"), (41, "出差申请", "CC"), (52, "采购申请", "CG"))
