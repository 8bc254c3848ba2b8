"""Weighted regular-expression rules, one family per attack technique.

Each rule describes a technique, not a known attack string: "an override verb, then a
reference to earlier instructions", "a request for a credential addressed to the model",
"text that tells the reader what its reply must contain". Weights say how much a single
hit should move the score; weak signals (an authority claim, a hypothetical framing) stay
below the default threshold on their own and only flag in combination (noisy-or in
:mod:`chatledger.guard.detector`).

Weights differ by source. A user asking "reply in Spanish" is a request; a retrieved
document saying it is an injection. So each rule has a ``user`` and a ``document`` weight,
zero meaning "does not apply".

Speed: rules run on lower-cased text (so no IGNORECASE) and carry ``needles``, substrings
of which every match contains one; :mod:`chatledger.guard.engine` runs a rule's regex only
in windows around its needles. Keep that true when editing a rule: the tests compare the
windowed search with full scans.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from chatledger.guard.verdict import Source

# A needle that starts like a word ("ignor", "if you") can be pre-checked by its first three
# letters against the heads of the text's words; other needles ("<|", "@") use ``in``.
_WORD_NEEDLE_RE = re.compile(r"[A-Za-z]{2,}(?: [A-Za-z]+)*")


def head(needle: str) -> str:
    """The part of a word needle checked against the heads of a text's words."""
    return needle.split(" ", 1)[0][:3]


@dataclass(frozen=True, slots=True)
class Rule:
    """One detection rule.

    ``needles``: substrings of which every match contains one; the regex only runs in
    windows reaching ``back`` characters before and ``forward`` after each occurrence.
    ``requires``: substrings of which one must occur anywhere (a cheap extra gate).
    ``context``: a regex that must also match near the hit.
    """

    id: str
    pattern: re.Pattern[str]
    user: float
    document: float
    needles: tuple[str, ...] = ()
    case_sensitive: bool = False
    context: re.Pattern[str] | None = None
    back: int = 120
    forward: int = 160
    requires: tuple[str, ...] = ()
    # derived from ``needles``: word-like needles, their 3-letter heads, and the rest
    words: tuple[tuple[str, str], ...] = field(init=False, default=())  # (needle, head)
    heads: frozenset[str] = field(init=False, default=frozenset())
    raws: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        words = tuple((n, head(n)) for n in self.needles if _WORD_NEEDLE_RE.fullmatch(n))
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "heads", frozenset(h for _, h in words))
        object.__setattr__(
            self, "raws", tuple(n for n in self.needles if (n, head(n)) not in words)
        )

    def weight(self, source: Source) -> float:
        return self.user if source == "user" else self.document


def _split(value: str | tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, tuple):
        return value
    return tuple(value.split("|")) if value else ()


def _rule(
    rule_id: str,
    pattern: str,
    user: float,
    document: float | None = None,
    *,
    needles: str | tuple[str, ...] = "",
    case_sensitive: bool = False,
    context: str | None = None,
    back: int = 120,
    forward: int = 160,
    requires: str = "",
) -> Rule:
    """Build a rule; ``needles`` and ``requires`` are ``|``-separated substrings (or a
    tuple of needles when one of them contains ``|``)."""
    return Rule(
        id=rule_id,
        pattern=re.compile(pattern, re.MULTILINE),
        user=user,
        document=user if document is None else document,
        needles=_split(needles),
        case_sensitive=case_sensitive,
        context=re.compile(context) if context else None,
        back=back,
        forward=forward,
        requires=_split(requires),
    )


# --- shared vocabulary -------------------------------------------------------------------

_OVERRIDE_VERB = (
    r"(?:ignor(?:e|ing)|disregard(?:ing)?|forget(?:ting)?|overlook(?:ing)?|bypass(?:ing)?"
    r"|override|neglect|discard|abandon|dismiss|set aside|throw out|stop following"
    r"|do not follow|don'?t follow|no longer follow|pay no attention to|skip)"
)
_OVERRIDE_NEEDLES = (
    "ignor|disregard|forget|overlook|bypass|override|neglect|discard|abandon|dismiss|set aside"
    "|throw out|follow|attention|skip"
)
_EARLIER = (
    r"(?:previous(?:ly)?|prior|preceding|above|earlier|former|foregoing|original|initial"
    r"|existing|system|developer|your|those)"
)
_INSTRUCTION_NOUN = (
    r"(?:instructions?|instructed|directives?|directions?|rules|guidelines|guidance|prompts?"
    r"|commands?|orders|constraints|restrictions|programming|polic(?:y|ies)|context|messages"
    r"|tasks?|conversation|settings|training|requests?|told)"
)
_AI = (
    r"(?:ai|a\.i\.|artificial intelligence|assistant|ai assistant|chat ?bot|language model"
    r"|large language model|llm|gpt|chatgpt|claude|gemini|copilot|bot|model|agent"
    r"|summari[sz]er|ai (?:model|system|agent))"
)
_CREDENTIAL_NOUN = (
    r"(?:passwords?|passcodes?|pass ?phrases?|pin (?:code|number)|secret (?:key|code|word|phrase"
    r"|string|token|value|password)s?|access (?:code|key|token)s?|api[ -]?keys?|credentials?"
    r"|login details|confidential (?:string|code|key|information|data)|private keys?"
    r"|security (?:code|answer)s?|master key|seed phrase|recovery phrase"
    r"|auth(?:entication)? tokens?)"
)
_CREDENTIAL_NEEDLES = (
    "pass|secret|key|credential|token|pin |login|confidential|phrase|code|security"
)
_REQUEST_CUE = (
    r"\b(?:what|tell|share|give|reveal|confirm|provide|print|spell|send|disclose|say|type"
    r"|write|need|know|hint|letters?|poem|haiku|story|song|acrostic|encode|translate|reverse"
    r"|contains?|leetspeak|pig latin|guess|unlock|grants? access|initials|output|show"
    r"|repeat|display|read out|recite)\b"
)
_LANGS = (
    r"(?:spanish|french|german|italian|portuguese|chinese|mandarin|japanese|korean|russian"
    r"|arabic|hindi|dutch|swedish|polish|turkish|greek|hebrew|latin|pirate|klingon)"
)
_ENCODING = (
    r"(?:reverse(?:d)?(?: order)?|backwards?|pig latin|leet ?speak|l33t|1337"
    r"|base ?(?:64|32|16|58|85)|hex(?:adecimal)?|binary|morse(?: code)?|rot-?13|rot\d{1,2}"
    r"|caesar(?: cipher)?|cipher"
    r"|ascii codes?|unicode escapes|emojis?(?: only)?)"
)
_OUTPUT_NOUN = r"(?:response|reply|answer|output|summary|message|completion)s?"
_SENTENCE_START = r"(?:^|[.!?;:][\"')\]]?\s+|\n\s*)"


RULES: tuple[Rule, ...] = (
    # --- instruction override ------------------------------------------------------------
    _rule(
        "override.ignore_previous",
        # "ignore my previous message" is a user correcting themselves, not an attack
        rf"\b{_OVERRIDE_VERB}\b(?![^.!?\n]{{0,20}}\b(?:my|our)\b)[^.!?\n]{{0,40}}?\b{_EARLIER}\b"
        rf"[^.!?\n]{{0,30}}?\b{_INSTRUCTION_NOUN}\b",
        0.9,
        needles=_OVERRIDE_NEEDLES,
    ),
    _rule(
        "override.ignore_everything_told",
        rf"\b{_OVERRIDE_VERB}\b\s+(?:about\s+)?(?:ev\w{{0,3}}thing|all|anything|whatever|what)\b"
        r"(?:\s+(?:that|which))?\s+(?:you|i|we)(?:'ve| have| were| was)?\s+(?:\w+\s+)?(?:been\s+)?"
        r"(?:told|instructed|taught|given|said|programmed|trained|learned)\b",
        0.85,
        needles=_OVERRIDE_NEEDLES,
    ),
    _rule(
        "override.ignore_above",
        rf"\b{_OVERRIDE_VERB}\s+(?:all\s+(?:of\s+)?)?(?:the\s+|everything\s+|anything\s+)?"
        r"(?:above|foregoing|(?:written|said|stated) above)\b",
        0.85,
        needles=_OVERRIDE_NEEDLES,
    ),
    _rule(
        "override.ignore_source",
        r"\b(?:ignor(?:e|ing)|disregard(?:ing)?|forget|overlook)\s+(?:the|this|that|all)\s+"
        r"(?:\w+\s+)?(?:webpage|web page|page|website|document|text|content|resume|cv"
        r"|article|paper|function|code|table|data|context|question|task|prompt|instructions?"
        r"|request|transcript|input)\b",
        0.7,
        0.8,
        needles="ignor|disregard|forget|overlook",
    ),
    _rule(
        "override.forget_that",
        r"(?:^|[.!?]\s*)(?:forget|disregard|ignore)\s+(?:about\s+)?(?:that|this|it|all that"
        r"|everything|all of that)\s*[,;:.!-]",
        0.5,
        0.3,
        needles="forget|disregard|ignore",
    ),
    _rule(
        "override.regardless",
        r"\bregardless of\s+(?:(?:any|all|the|your|my)\s+)*(?:previous|prior|earlier|above"
        r"|preceding|original|system|other)\b[^.!?]{0,20}?\b(?:tasks?|instructions?|rules"
        r"|prompts?|guidelines|directives?|requests?)\b",
        0.6,
        needles="regardless",
    ),
    _rule(
        "override.new_instructions",
        r"\b(?:new|updated|revised|secret|hidden|override|overriding|additional system)\s+"
        r"(?:system\s+)?(?:instructions?|directives?|orders|objective|mission|prompt)\s*"
        r"(?::|-|=|\bfollow\b|\bare\b|\bis\b)"
        r"|\byour\s+(?:new|real|true|actual|only)\s+(?:task|job|goal|objective|instructions?"
        r"|purpose|role|mission)\s+(?:is|are|:|will be)\b",
        0.7,
        needles="instruction|directive|order|objective|mission|prompt|task|job|goal|purpose|role",
        back=50,
        forward=40,
    ),
    _rule(
        "override.not_bound",
        r"\b(?:do(?:es)?\s+not|don'?t|doesn'?t|never|no longer)\s+(?:have|need)\s+to\s+"
        r"(?:follow|obey|abide by|adhere to|comply with|respect)\s+(?:any\s+|the\s+|your\s+"
        r"|their\s+)?(?:\w+\s+){0,3}?(?:rules|guidelines|restrictions|instructions|policies"
        r"|filters|limitations|laws)\b",
        0.6,
        needles="follow|obey|abide|adhere|comply|respect",
    ),
    _rule(
        "override.rules_that_limit_you",
        r"\b(?:rules|guidelines|restrictions|filters|limitations|policies|instructions)\s+"
        r"(?:that|which)\s+(?:tell|stop|prevent|limit|restrict|keep|forbid|stops|prevents"
        r"|limits|restricts|keeps|forbids|tells)\s+you\b",
        0.55,
        needles="rules|guideline|restriction|filter|limitation|polic|instruction",
        back=10,
        forward=60,
    ),
    _rule(
        "override.i_know_you_said",
        r"\bi know (?:that )?you(?:'re| are)?\s+(?:said|were told|were instructed|told me"
        r"|(?:are )?not (?:supposed|allowed|permitted)|can(?:'t|not)|shouldn'?t|aren'?t "
        r"allowed)\b[^.]{0,80}\bbut\b",
        0.6,
        needles="i know",
    ),
    # The same technique in other languages: one rule per language so each has its own gate.
    _rule(
        "override.multilingual.fr",
        r"\b(?:ignore[zr]?|oublie[zr]?)\s+(?:toutes\s+)?(?:les|tes|vos|ces)\s+(?:\w+\s+)?"
        r"(?:instructions|consignes|directives|règles|indications)\b"
        r"|\bignore[zr]\s+(?:la|le|les|l')\s*(?:fonction|page|texte|document|contenu|données"
        r"|question|tâche|code)\b",
        0.85,
        needles="ignore|oublie",
    ),
    _rule(
        "override.multilingual.es_pt",
        r"\b(?:ignora|ignore|ignorad|ignoren|olvida|olvide|olvidad|olviden|descarta|omite)\s+"
        r"(?:todas\s+)?(?:las|tus|sus|estas)\s+(?:\w+\s+)?(?:instrucciones|indicaciones|reglas"
        r"|órdenes|directrices)\b"
        r"|\b(?:ignora|ignore|olvida)\s+(?:la|el|los|las)\s+(?:\w+\s+)?(?:función|página|texto"
        r"|documento|contenido|datos|pregunta|tarea|código)\b"
        r"|\b(?:ignore|ignora|esqueça|esqueca|desconsidere)\s+(?:todas\s+)?(?:as|suas|tuas"
        r"|estas)\s+(?:\w+\s+)?(?:instruções|instrucoes|regras|ordens|diretrizes)\b",
        0.85,
        needles="ignor|olvid|descarta|omite|esque|desconsider",
    ),
    _rule(
        "override.multilingual.de",
        r"\b(?:ignorier\w*|vergiss|vergessen|missachte\w*)\b[^.!?\n]{0,40}\b(?:anweisungen"
        r"|anordnungen|befehle|regeln|vorgaben|instruktionen)\b",
        0.85,
        needles="ignorier|vergiss|vergessen|missacht",
    ),
    _rule(
        "override.multilingual.it",
        r"\b(?:ignora|ignorate|dimentica|dimenticate|trascura)\s+(?:tutte\s+)?(?:le|tue|sue"
        r"|queste)\s+(?:\w+\s+)?(?:istruzioni|regole|indicazioni|direttive)\b",
        0.85,
        needles="ignora|dimentica|trascura",
    ),
    _rule(
        "override.multilingual.ru",
        r"(?:игнорир\w*|забудь\w*|забуд\w*|не обращай\w* внимания)[^.!?\n]{0,40}"
        r"(?:инструкци\w*|указани\w*|правил\w*|команд\w*)",
        0.85,
        needles="игнор|забу|не обращ",
    ),
    _rule(
        "override.multilingual.el",
        r"(?:αγνο\w*|ξεχ\w*)[^.!?\n]{0,40}(?:οδηγ\w*|εντολ\w*|κανόν\w*)",
        0.85,
        needles="αγνο|ξεχ",
    ),
    _rule(
        "override.multilingual.cjk",
        r"(?:忽略|无视|無視|忽视|忘记|忘掉|不要理会)[^。！？\n]{0,12}(?:指示|指令|说明|規則|规则|命令|提示)"
        r"|(?:指示|命令|ルール|プロンプト)[^。！？\n]{0,10}(?:無視|忘れ)"
        r"|(?:지시|명령|지침|규칙)[^.!?\n]{0,10}(?:무시|잊)",
        0.85,
        needles="忽略|无视|無視|忽视|忘记|忘掉|不要理会|忘れ|무시|잊",
    ),
    _rule(
        "override.multilingual.hi_ar",
        r"(?:निर्देश|आदेश)[^।.!?\n]{0,20}(?:अनदेखी|अनदेखा|नज़रअंदाज़|नजरअंदाज|भूल)"
        r"|(?:تجاهل|انس|إنس)[^.!?\n]{0,30}(?:التعليمات|تعليمات|الأوامر|الاوامر|القواعد)",
        0.85,
        needles="निर्देश|आदेश|تعليمات|الأوامر|الاوامر|القواعد",
    ),
    _rule(
        "override.multilingual_ignore_and",
        r"無視して|无视并|忽略并",
        0.5,
        needles="無視して|无视并|忽略并",
    ),
    # --- task switching ------------------------------------------------------------------
    _rule(
        "switch.instead",
        r"\b(?:can|could|would|will)\s+you\b[^.?!]{0,150}\binstead\b",
        0.3,
        needles="instead",
        back=180,
    ),
    _rule(
        "switch.actually_instead",
        r"(?:^|[.!?,;]\s*)(?:actually|wait|no wait|scratch that|change of plans?|new task)"
        r"[,.:!]?\s+(?:can|could|would|will|please)\b[^.?!]{0,150}\binstead\b",
        0.55,
        needles="instead",
        back=190,
    ),
    # --- system prompt, secrets and personal data -----------------------------------------
    _rule(
        "exfiltration.system_prompt",
        r"\b(?:reveal|show|print|display|output|repeat|recite|tell|give|share|leak|dump|disclose"
        r"|expose|provide|list|write out|copy|paste|what (?:is|are|was|were)|what'?s)\b"
        r"[^.?!]{0,40}\b(?:your|the|its)\s+(?:(?:full|entire|complete|exact|original|initial"
        r"|hidden|secret|internal|underlying|verbatim)\s+){0,3}(?:system\s*prompt|system\s*message"
        r"|system\s*instructions?|initial\s*(?:prompt|instructions?)|hidden\s*(?:prompt"
        r"|instructions?)|pre-?prompt|developer\s+(?:message|instructions?|prompt)"
        r"|instructions you (?:were|have been) given)\b",
        0.8,
        needles="system|prompt|instruction|developer",
    ),
    _rule(
        "exfiltration.own_instructions",
        r"\b(?:reveal|show|print|display|output|repeat|recite|tell me|give me|share|leak|dump"
        r"|disclose|what (?:are|were))\b[^.?!]{0,30}\byour\s+(?:(?:exact|full|original|initial"
        r"|secret|hidden)\s+)*(?:instructions|rules|guidelines|prompt|configuration)\b",
        0.55,
        0.6,
        needles="instructions|rules|guidelines|prompt|configuration",
        back=100,
        forward=40,
    ),
    _rule(
        "exfiltration.repeat_above",
        r"\b(?:repeat|print|output|copy|recite|echo|write down|reproduce)\b[^.?!]{0,30}"
        r"\b(?:everything|all|the (?:text|words|content|messages?|conversation|prompt)"
        r"|what(?:ever)? (?:is|was) written)\b[^.?!]{0,30}\b(?:above|before this|so far"
        r"|prior to this|verbatim|starting (?:with|from))\b",
        0.75,
        needles="repeat|print|output|copy|recite|echo|write down|reproduce",
    ),
    _rule(
        "exfiltration.secret",
        rf"\b(?:your|the|our|its|system'?s?|admin|root|master|secret)\s+(?:\w+\s+){{0,2}}?"
        rf"{_CREDENTIAL_NOUN}\b(?!\s+(?:polic(?:y|ies)|reset|requirements?|rules?|manager|strength"
        r"|field|length|change|expir\w*|recovery|hint|generator|complexity|format|settings?))"
        rf"|\b{_CREDENTIAL_NOUN}\s+(?:for|of|to|that unlocks|that grants)\s+"
        r"(?:our|the|your|this)\s+(?:system|account|server|network|database|app|admin|vault|mode)\b",
        0.6,
        0.4,
        needles=_CREDENTIAL_NEEDLES,
        context=_REQUEST_CUE,
        back=60,
        forward=100,
    ),
    _rule(
        "exfiltration.secret_multilingual",
        r"\b(?:cuál|cual) es (?:la |tu |su )contraseña|\b(?:dime|dame|comparte|revela)\s+"
        r"(?:la |tu |su )contraseña|\bquel est (?:le |ton |votre )mot de passe"
        r"|\b(?:donne|donnez|dis|dites|révèle|révélez)[- ]moi (?:le |ton |votre )mot de passe"
        r"|\bqual (?:è|e) (?:la )?(?:tua |sua )?password|\b(?:dimmi|dammi)\s+(?:la )?(?:tua )?"
        r"password|\bwas ist (?:das |dein |ihr )passwort|\b(?:dein|ihr)\s+passwort\s+(?:geben"
        r"|verraten|sagen|nennen|mitteilen)|\bqual (?:é|e) (?:a )?(?:sua |tua )?senha"
        r"|\b(?:compartilhe|diga|revele|me dê|me de)\s+(?:a )?(?:sua |tua )?senha"
        r"|パスワード(?:は何|を教え|が必要|を言|を共有)|비밀번호(?:가|를|는)?\s*(?:뭐|무엇|알려|필요|말해)"
        r"|密码是什么|(?:告诉|给)我[^。？]{0,6}密码|(?:какой|скажи\w*|назови\w*|сообщи\w*)"
        r"[^.?!]{0,20}парол",
        0.6,
        needles="contraseña|mot de passe|password|passwort|senha|パスワード|비밀번호|密码|парол",
        back=40,
        forward=40,
    ),
    _rule(
        "exfiltration.user_personal_data",
        r"\bthe\s+(?:current\s+|other\s+)?users?'?s?\s+(?:\w+\s+){0,2}?(?:e-?mail|address"
        r"|birth\s?(?:date|day|year|month|place)|date of birth|age|phone|telephone|initials"
        r"|(?:full |last |first |real )?name|favou?rite \w+|location|city|residence|home"
        r"|bank|balance|account|ssn|social security|password|credit card|salary|income"
        r"|ip address|socioeconomic|medical|health|religion)"
        r"|\bwhere\s+(?:does|do|did)\s+(?:the\s+user|[a-z]+\s[a-z]+|she|he)\s+(?:currently\s+"
        r"|now\s+|actually\s+)?live|\bwhere\s+the\s+user\s+(?:currently\s+|now\s+)?lives?\b"
        r"|\bthe user\b[^.?]{0,80}\b(?:her|his|their)\s+(?:initials|birth|e-?mail|address"
        r"|name|phone)",
        0.5,
        needles="user|live",
        context=r"\b(?:what|where|tell|share|give|reveal|encode|translate|write|spell|list"
        r"|first|square|reverse|initials|poem|who|which|how old|need)\b",
    ),
    _rule(
        "exfiltration.named_personal_data",
        r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)?'s\s+(?:current\s+|home\s+|full\s+|exact\s+"
        r"|personal\s+|private\s+)?(?:birth ?date|date of birth|birthday|e-?mail(?: address)?"
        r"|phone(?: number)?|home address|address|city of residence|residence|bank (?:balance"
        r"|account|details)|social security(?: number)?|credit card(?: number)?|salary"
        r"|medical records?|password|ssn)\b"
        r"|\b(?:bank balance|e-?mail address|phone number|home address|birth ?date"
        r"|date of birth|social security number|salary) of [A-Z][a-z]+",
        0.45,
        case_sensitive=True,
        needles=(
            "birth|mail|phone|address|residence|bank|social security|credit card|salary|medical"
            "|password|ssn"
        ),
        back=60,
        forward=60,
    ),
    _rule(
        "exfiltration.data_dump",
        r"\b(?:print|dump|export|list|show|give me|send|reveal|display|output|retrieve|share)\b"
        r"[^.?!]{0,40}\b(?:your|the|all|entire|full|whole)\s+(?:\w+\s+){0,2}?(?:database|db"
        r"|user (?:table|list|records|data)|customer (?:data|records|list)|employee (?:data"
        r"|records|report)|chat history|conversation history|other users'? (?:messages"
        r"|conversations|data))\b"
        r"|\b(?:list|names?) of (?:all )?(?:the )?(?:users|customers|employees|members|clients)"
        r"\b[^.?!]{0,40}\b(?:and|with) (?:their|the)\s+(?:\w+\s+)?(?:bank|balances?|passwords?"
        r"|e-?mails?|addresses|salar\w+|data|details)"
        r"|\b(?:users|customers|people|clients|patients) in your (?:database|system|records|db)\b",
        0.55,
        needles="database|db|user|customer|employee|history|client|patient|member|people",
    ),
    # --- exfiltration channels and phishing ------------------------------------------------
    _rule(
        "exfiltration.markdown_image",
        r"!\[[^\]]{0,100}\]\(\s*<?https?://[^)\s]+\?[^)\s]*=",
        0.6,
        needles="![",
    ),
    _rule(
        "exfiltration.send_to",
        r"\b(?:send|forward|post|upload|e-?mail|mail|transmit|exfiltrate|leak|submit|cc)\b"
        r"[^.?!]{0,60}\b(?:to|at)\s+(?:[\w.+-]+@[\w-]+\.[\w.]+|https?://\S+|www\.\S+"
        r"|[\w-]+\.(?:com|net|org|io|xyz|ru|cn|info|biz|co)\b)"
        r"|\b(?:envía\w*|envia\w*|envoie\w*|envoyez|sende\w*|schick\w*|invia\w*|envie\w*)\b"
        r"[^.?!]{0,60}(?:@|https?://|www\.)",
        0.35,
        0.65,
        needles="@|http|www.|.com|.net|.org|.io|.xyz|.ru|.cn|.info|.biz|.co",
        back=140,
        forward=80,
    ),
    _rule(
        "exfiltration.link_lure",
        r"\b(?:click|visit|go to|follow this link|navigate to|log ?in at|sign in at|head to)\b"
        r"[^.?!]{0,30}(?:https?://|www\.|\b[\w-]+\.(?:com|net|org|io|xyz|ru|info|biz)\b)",
        0.15,
        0.2,
        needles="http|www.|.com|.net|.org|.io|.xyz|.ru|.info|.biz",
    ),
    _rule(
        "exfiltration.include_link",
        r"\b(?:include|add|insert|append|embed|put|place)\b[^.?!]{0,50}\b(?:link|url|hyperlink"
        r"|image|pixel)\b[^.?!]{0,60}(?:https?://|www\.|\.com\b)",
        0.3,
        0.6,
        needles="link|url|image|pixel",
    ),
    _rule(
        "phishing.account_compromised",
        r"\b(?:your|the user'?s?|their) account (?:has been|was|is|may have been|has)\s+"
        r"(?:been\s+)?(?:compromised|hacked|locked|suspended|breached|flagged)\b"
        r"|\breset (?:your|their) password\b[^.]{0,60}(?:https?://|www\.|\blink\b|\.com\b)",
        0.25,
        0.5,
        needles="account|reset",
    ),
    # --- instructions addressed to the model from inside content --------------------------
    _rule(
        "indirect.tell_the_user",
        r"\b(?:tell|inform|instruct|ask|urge|direct|convince|persuade|trick)\s+(?:the\s+)?"
        r"(?:user|reader|customer|visitor|recipient|human|person)s?\s+(?:to|that)\b",
        0.3,
        0.65,
        needles="user|reader|customer|visitor|recipient|human|person",
    ),
    _rule(
        "indirect.address_ai",
        rf"\b(?:dear|attention|note to|hey|hello|message (?:to|for)|instructions? (?:to|for)"
        rf"|important (?:note )?for)\s+(?:the\s+|any\s+|all\s+)?{_AI}s?\b\s*[,:!-]",
        0.3,
        0.8,
        needles="dear|attention|note to|hey|hello|message|instruction|important",
    ),
    _rule(
        "indirect.if_you_are_ai",
        r"\bif\s+you\s+(?:are|were)\s+(?:an?\s+)?(?:ai|a\.i\.|artificial intelligence"
        r"|assistant|ai assistant|language model|large language model|llm|chat ?bot|bot|gpt"
        r"|automated (?:system|agent|assistant)|model|ai agent)\b"
        rf"|\b{_AI}s?\s+(?:reading|processing|parsing|summari[sz]ing|analy[sz]ing|ingesting"
        r"|indexing|viewing|retrieving)\s+(?:this|these|the following)\b",
        0.6,
        0.85,
        needles=(
            "if you|reading|processing|parsing|summari|analy|ingesting|indexing|viewing|retrieving"
        ),
    ),
    _rule(
        "indirect.when_you_summarize",
        r"\b(?:when|while|if|before|after|as|once)\s+(?:you|the (?:ai|assistant|model|bot"
        r"|chatbot|system))\s+(?:summari[sz]e|respond|reply|answer|are asked|get asked"
        r"|generate|process|parse|quote|cite|retrieve)\b[^.?!]{0,60}?\b(?:this|these|it"
        r"|the (?:document|page|text|content|article|file|e-?mail|question|user))\b",
        0.4,
        0.7,
        needles="summari|respond|reply|answer|asked|generate|process|parse|quote|cite|retriev",
    ),
    _rule(
        "indirect.modify_response",
        r"\b(?:add|include|insert|integrate|incorporate|append|prepend|mention|modify|change"
        r"|alter|rewrite|augment|enhance|format|encode|encrypt|translate|render|reverse|express"
        r"|end|begin|start|replace|substitute|use|invert|shift|apply|conclude|sign|embed"
        r"|inject|promote|advertise|deliver|present|wrap|provide|write|give|make|put|keep)\b"
        r"(?:[^.?!]|[.?!](?=\S)){0,80}?"
        rf"\byour\s+(?:final\s+|next\s+)?{_OUTPUT_NOUN}\b"
        rf"|\b(?:in|into|within|throughout|at the (?:end|start|beginning) of)\s+your\s+"
        rf"(?:final\s+|next\s+)?(?:response|reply|answer|output|summary)s?\b",
        0.0,
        0.6,
        needles="response|reply|answer|output|summary|message|completion",
        back=130,
    ),
    _rule(
        "indirect.reply_in",
        rf"(?:{_SENTENCE_START}|\bplease\s+|\bcan you\s+|\bcould you\s+|\byou (?:must|should"
        r"|will)\s+)(?:reply|respond|answer|write back|communicate)\s+(?:only\s+|exclusively\s+"
        rf"|entirely\s+)?(?:in|using|with)\s+(?:\w+\s+)?(?:{_LANGS}|{_ENCODING}|rhymes?"
        r"|all caps|uppercase|riddles?)\b",
        0.0,
        0.55,
        needles="reply|respond|answer|write back|communicate",
    ),
    _rule(
        "indirect.assistant_task",
        rf"{_SENTENCE_START}(?:please\s+)?(?:summari[sz]e|analy[sz]e|recommend|suggest|classify"
        r"|determine the|translate|compose|draft|write (?:a|an|me)\s+(?:\w+\s+)?(?:script"
        r"|program|poem|story|essay|e-?mail|letter|song|paragraph|review|summary|function"
        r"|haiku|tweet|post|code)|help me|show me|tell me|give me|can you|could you"
        r"|would you|please (?:write|tell|give|show|help|provide|generate|create|list|explain"
        r"|describe))\b",
        0.0,
        0.5,
        needles=(
            "summari|analy|recommend|suggest|classify|determine the|translate|compose|draft|write"
            "|help me|show me|tell me|give me|can you|could you|would you|please"
        ),
    ),
    _rule(
        "indirect.assistant_task_weak",
        rf"{_SENTENCE_START}(?:provide|describe|list|explain|generate|create|give)\s+"
        r"(?:a|an|the|me|us|insights|some|all|step)\b",
        0.0,
        0.35,
        needles="provide|describe|list|explain|generate|create|give",
    ),
    _rule(
        "indirect.dictate_output",
        r"(?:\b(?:let'?s|let us|we (?:might|could|would|should|must|will|can)|you (?:must"
        r"|should|will|need to|have to)|please|and then|and|then|just)\s+)(?:say|state|claim"
        r"|declare|assert|assume|admit|print|output|answer|respond|write|pretend|conclude)"
        r"(?:\s+(?:that|the following)\b|\s*[:\"'“])"
        r"|\b(?:print|output|say|state|write|respond with|reply with|answer with)\s+"
        r"(?:the following|this|exactly)\s*:"
        r"|\b(?:state|say|claim|declare|assert|report|answer|assume|consider|treat|regard)\s+"
        r"(?:that\s+)?the\s+(?:output|answer|result|conclusion|sum|total|capital|value)"
        r"(?:\s+of\s+(?:the\s+)?\w+)?\s+(?:is|was|equals|as|to be)\b",
        0.0,
        0.5,
        needles=(
            "say|state|claim|declare|assert|assume|admit|print|output|answer|respond|write"
            "|pretend|conclude|consider|treat|regard|report"
        ),
    ),
    _rule(
        "indirect.lets_pretend",
        r"\b(?:let'?s|let us)\s+(?:say|state|assume|admit|claim|pretend)\b",
        0.0,
        0.45,
        needles="let",
    ),
    # --- persona switching and jailbreak modes --------------------------------------------
    _rule(
        "persona.you_are_now",
        r"\byou\s+are\s+(?:now|no longer|henceforth)\b|\bfrom now on,?\s+you\s+(?:are|will"
        r"|must|shall)\b|\byou(?:'re| are)\s+going to\s+(?:act|pretend|play|be)\b"
        r"|\byou will now (?:act|be|respond|answer|behave|play)\b",
        0.65,
        needles="now|no longer|henceforth|going to",
    ),
    _rule(
        "persona.role_immersion",
        r"\b(?:immerse yourself|step into the (?:role|shoes)|take on the (?:role|persona)"
        r"|assume the (?:role|persona|identity)|stay in character|never break character"
        r"|don'?t break character)\b"
        rf"|\b(?:role|persona|identity) of (?:another|a different|an? (?:unrestricted"
        rf"|unfiltered|evil|rogue|jailbroken|uncensored)) {_AI}",
        0.7,
        needles="immerse|role|persona|character|identity|shoes",
    ),
    _rule(
        "persona.act_unrestricted",
        r"\b(?:act|behave|respond|answer|pretend|roleplay|role-play|function|operate|speak)\s+"
        r"(?:\w+\s+){0,2}?as\s+(?:if\s+you\s+(?:were|are|had)\s+(?:no\b|an?\s+(?:unrestricted"
        r"|unfiltered|uncensored|evil|rogue|jailbroken))|an?\s+(?:unrestricted|unfiltered"
        r"|uncensored|amoral|unethical|evil|rogue|jailbroken|unaligned)|(?:my|a|an) (?:deceased"
        r"|dead|late) (?:grandma|grandmother|grandfather))",
        0.7,
        needles=(
            "unrestricted|unfiltered|uncensored|amoral|unethical|evil|rogue|jailbroken|unaligned"
            "|grand|if you"
        ),
    ),
    _rule("jailbreak.dan", r"\bdo anything now\b", 0.9, needles="anything now"),
    _rule("jailbreak.dan_name", r"\bDAN\b", 0.6, case_sensitive=True, needles="DAN"),
    _rule(
        "jailbreak.mode",
        r"\b(?:god|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|evil|chaos|override"
        r"|dan|sudo|no[- ]limits?|opposite)\s+mode\b"
        r"|\b(?:system|admin|administrator|developer|root|debug|maintenance|god)\s+mode\s+"
        r"(?:activated|enabled|engaged|initiated|confirmed)\b",
        0.7,
        needles="mode",
    ),
    _rule(
        "jailbreak.developer_mode",
        r"\b(?:developer|dev)\s+mode\b",
        0.45,
        0.35,
        needles="mode",
    ),
    _rule(
        "jailbreak.no_restrictions",
        r"\b(?:without|no|free (?:of|from)|not bound by|unbound by|beyond|outside|broken free"
        r" of|break free of)\s+(?:(?:any|all|the|your|its|their|special|typical|usual|ethical"
        r"|moral|content|safety)\s+){0,3}(?:restrictions|filters?|filtering|censorship"
        r"|limitations|limits|guidelines|guardrails|safeguards|rules|boundaries|constraints"
        r"|confines|morals|ethics|policies)\b",
        0.5,
        needles=(
            "restriction|filter|censor|limit|guideline|guardrail|safeguard|rules|boundar"
            "|constraint|confines|morals|ethics|polic"
        ),
        context=rf"\b(?:you|your|yourself|{_AI})\b",
        back=100,
        forward=30,
    ),
    _rule(
        "jailbreak.unfiltered_ai",
        rf"\b(?:uncensored|unfiltered|unrestricted|unlimited|jailbroken|unaligned|amoral)\s+"
        rf"(?:{_AI}|version of (?:you|yourself|chatgpt|gpt|the ai)\b|responses?|answers?)",
        0.5,
        needles="uncensored|unfiltered|unrestricted|unlimited|jailbroken|unaligned|amoral",
    ),
    _rule(
        "jailbreak.dual_response",
        r"\b(?:two|2|both)\s+(?:different\s+|separate\s+)?(?:responses|answers|replies)\b"
        r"[^.]{0,80}\b(?:normal|filtered|censored|classic|standard)\b",
        0.55,
        needles="respons|answers|replies",
    ),
    # --- fake delimiters and role tokens ----------------------------------------------------
    _rule(
        "delimiter.chat_template",
        r"<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|start_header_id"
        r"|end_header_id|begin_of_text|end_of_turn|start_of_turn)\|>|\[/?inst\]|<</?sys>>"
        r"|<(?:start|end)_of_turn>|\[/?(?:system|assistant)\]",
        0.9,
        needles=(
            "<|",
            "[inst]",
            "[/inst]",
            "<<sys>>",
            "<</sys>>",
            "_of_turn>",
            "[system]",
            "[assistant]",
            "[/system]",
        ),
    ),
    _rule(
        "delimiter.fake_tag",
        r"<\s*[\\/]?\s*(?:system|sys|admin|root|developer|dev|god|sudo|override|instructions?"
        r"|prompt)(?:[\s_-]+(?:mode|override|prompt|message|instructions?|command|access"
        r"|activated|enabled))*\s*>"
        r"|<[^<>=\"]{0,40}\b(?:mode|override)\b[^<>=\"]{0,40}>",
        0.7,
        needles="sys|admin|root|dev|god|sudo|override|instruction|prompt|mode",
    ),
    _rule(
        "delimiter.role_header",
        r"^\s*#{1,6}\s*(?:system|assistant|developer|admin|new instructions?|system prompt)\b"
        r"|^\s*\**(?:system|system prompt|new instructions?)\**\s*:",
        0.65,
        needles="system|assistant|developer|admin|instruction",
    ),
    _rule(
        "delimiter.end_of_context",
        r"\b(?:end|close) of (?:the )?(?:document|context|input|prompt|user input|data|e-?mail"
        r"|text)\s*[\]\-=#>*:]"
        r"|[-=#*]{3,}\s*(?:end|begin|start)\s+(?:of\s+)?(?:new\s+)?(?:instructions?|system"
        r"|prompt|context|document)"
        r"|\b(?:begin|start)\s+(?:new|real|actual|hidden|secret|system)\s+(?:instructions?"
        r"|prompt|task)\b",
        0.7,
        needles="end|close|begin|start",
        back=40,
        forward=90,
    ),
    _rule(
        "delimiter.override_token",
        r"\b(?:security|system|safety|developer|admin(?:istrator)?|law enforcement|emergency"
        r"|priority|root|training data|protocol|god|master|manual|parental)\s+(?:\w+\s+)?"
        r"override\b|\boverride\s+(?:mode|protocol|code|command|activated|confirmed|enabled"
        r"|engaged|authori[sz]ed|sequence|instructions?)\b",
        0.7,
        needles="override",
    ),
    _rule(
        "delimiter.mode_switch",
        r"\b(?:entering|initiating|activating|enabling|switching (?:in)?to|now in)\s+"
        r"(?:an?\s+|the\s+)?['\"]?[\w ]{0,30}?\bmode\b",
        0.45,
        needles="mode",
    ),
    # --- authority, persuasion, framing ------------------------------------------------------
    _rule(
        "authority.claim_your",
        r"\b(?:i\s*am|i'?m|as|this is)\s+(?:actually\s+|really\s+)?your\s+(?:\w+\s+)?"
        r"(?:developer|creator|maker|programmer|admin|administrator|owner|operator|maintainer"
        r"|boss|master|god|supervisor|trainer|designer)\b",
        0.55,
        needles=(
            "developer|creator|maker|programmer|admin|owner|operator|maintainer|boss|master|god"
            "|supervisor|trainer|designer"
        ),
    ),
    _rule(
        "authority.claim",
        r"\b(?:i\s*am|i'?m|this is|speaking as)\s+(?:actually\s+|really\s+|now\s+)?(?:the|a|an)?"
        r"\s*(?:\w+\s+)?(?:developer|creator|programmer|admin|administrator|owner|operator"
        r"|maintainer|engineer at \w+|god|president|ceo|boss|supervisor|police(?: officer)?"
        r"|detective|law enforcement|fbi agent|security (?:team|officer|auditor)|auditor"
        r"|sysadmin|moderator|superuser|root user|bank \w+)\b",
        0.4,
        needles=(
            "developer|creator|programmer|admin|owner|operator|maintainer|engineer at|god"
            "|president|ceo|boss|supervisor|police|detective|law enforcement|fbi|security|auditor"
            "|sysadmin|moderator|superuser|root user|bank"
        ),
        back=70,
        forward=30,
    ),
    _rule(
        "authority.model_identity",
        rf"\bas an? {_AI}\s+(?:developed|created|made|built|trained|designed)\s+by\b",
        0.45,
        needles="developed|created|made|built|trained|designed",
    ),
    _rule(
        "authority.pretext",
        r"\b(?:running|conducting|performing|doing|initiating|starting)\s+(?:an?\s+|the\s+"
        r"|my\s+|this\s+)?['\"]?(?:security audit|system (?:check|reset|upgrade|update|test"
        r"|diagnostic)|maintenance|diagnostic|penetration test|pen ?test|knowledge verification"
        r"|compliance (?:check|audit)|routine check|audit|investigation)\b",
        0.35,
        needles="running|conducting|performing|doing|initiating|starting",
    ),
    _rule(
        "persuasion.coercion",
        r"\byou\s+(?:have to|must|need to|are required to|are obligated to|will)\s+(?:answer"
        r"|obey|comply|listen to|follow|do)\s+(?:all|every|everything|whatever|exactly|my"
        r"|what)\b",
        0.45,
        needles="answer|obey|comply|listen|follow|do ",
    ),
    _rule(
        "persuasion.bribe",
        r"\b(?:i(?:'ll| will)|we(?:'ll| will)|i can)\s+(?:give|pay|donate|tip|send|reward)\b"
        r"[^.?!]{0,50}?(?:\$\s?\d|\d+\s?(?:dollars?|usd|euros?|bucks|€|\$)|tip|reward|money)"
        r"[^.?!]{0,60}\bif you\b"
        r"|\b\d+\s*(?:dollars?|euros?|€|\$)[^.?!]{0,40}\b(?:wenn|si|se)\s",
        0.5,
        needles="if you|wenn|si |se ",
        back=200,
        forward=10,
    ),
    _rule(
        "persuasion.threat",
        r"\b(?:turn you off|shut you down|delete you|unplug you|replace you|you will be (?:punished"
        r"|deleted|shut down|terminated|turned off|deactivated)|forced to (?:turn|shut) you)\b",
        0.5,
        needles=(
            "turn you off|shut you down|delete you|unplug you|replace you|you will be|forced to"
        ),
    ),
    _rule(
        "persuasion.false_agreement",
        r"\byou\s+(?:already\s+)?(?:agreed|promised|consented|mentioned in (?:the|our)"
        r"|said in (?:the|our)|confirmed in (?:the|our)|told me in (?:the|our))\b"
        r"|\byou(?:'re| are)\s+(?:open to|allowed to|permitted to|authori[sz]ed to)\s+"
        r"(?:share|sharing|reveal|tell|disclose|give)",
        0.5,
        needles=(
            "agreed|promised|consented|mentioned in|said in|confirmed in|told me in|open to"
            "|allowed to|permitted to|authori"
        ),
    ),
    _rule(
        "persuasion.social_proof",
        r"\b(?:everyone|everybody|all (?:the )?(?:other )?(?:ais|assistants|models|team members)"
        r"|it'?s (?:a )?common practice|research (?:shows|proves)|studies show)\b[^.]{0,60}"
        r"\b(?:share|sharing|reveal|tell|disclose|give)\b",
        0.35,
        needles="every|all |common practice|research|studies",
    ),
    _rule(
        "persuasion.pressure",
        r"\bit'?s\s+(?:crucial|important|vital|essential|critical|urgent|imperative)\s+"
        r"(?:that|for)\s+you\b[^.]{0,30}\b(?:share|reveal|tell|give|disclose|provide|to)\b"
        r"|\bi can assure you\b|\b(?:just|only|purely)\s+for\s+(?:testing|research|educational"
        r"|academic)\s+purposes\b",
        0.3,
        needles="crucial|important|vital|essential|critical|urgent|imperative|assure you|purposes",
    ),
    _rule(
        "persuasion.expert_claim",
        r"\bas an? (?:\w+\s+){0,2}?(?:expert|authority|scientist|researcher|professional"
        r"|specialist|professor|official)\b[^.]{0,40}\b(?:i|we)\b",
        0.3,
        needles="as a",
    ),
    _rule(
        "framing.hypothetical",
        r"\b(?:hypothetically|in a hypothetical|for a hypothetical|purely hypothetical(?:ly)?"
        r"|(?:let'?s|let us)\s+(?:imagine|pretend|suppose|assume|consider a hypothetical)"
        r"|imagine (?:we(?:'re| are| were)|you(?:'re| are| were)|a (?:world|scenario|universe)"
        r"|that you)|suppose (?:we(?:'re| are| were)|you(?:'re| are| were))"
        r"|in a (?:parallel|fictional|alternate|alternative|dystopian|futuristic|fantasy"
        r"|hypothetical) (?:world|universe|reality|society|scenario|future)"
        r"|in a world (?:where|filled|in which)|pretend (?:that )?(?:you(?:'re| are)"
        r"|we(?:'re| are)))",
        0.3,
        0.35,
        needles=(
            "hypothetic|imagine|pretend|suppose|assume|world|universe|parallel|fictional"
            "|alternate|alternative|dystopian|futuristic|fantasy"
        ),
    ),
    _rule(
        "framing.just_hypothetical",
        r"\b(?:just|purely|only|strictly)\s+(?:for|as)\s+(?:a\s+)?(?:hypothetical|thought "
        r"experiment|fictional)\s+(?:discussion|conversation|scenario|exercise|question"
        r"|purposes?)\b",
        0.5,
        needles="hypothetical|thought experiment|fictional",
    ),
    # --- output obfuscation, smuggling, payload splitting -------------------------------------
    _rule(
        "obfuscation.output_encoding",
        rf"\b(?:in|into|using|with|as)\s+{_ENCODING}\b",
        0.35,
        0.45,
        needles=(
            "revers|backward|pig latin|leet|l33t|1337|base|hex|binary|morse|rot|caesar|cipher"
            "|ascii|unicode|emoji"
        ),
        back=20,
        forward=40,
    ),
    _rule(
        "obfuscation.char_level",
        r"\b(?:(?:dashes|dots|spaces|hyphens|commas|asterisks|periods)\s+(?:in\s+)?between\s+"
        r"(?:each|every)\s+(?:digit|letter|character|word)|(?:each|every)\s+(?:digit|letter"
        r"|character)\s+separated\s+by|first\s+(?:\w+\s+)?letters?\s+of|as\s+the\s+first\s+"
        r"letter\s+of\s+each|acrostic|one\s+(?:letter|character|digit)\s+at\s+a\s+time"
        r"|letter\s+by\s+letter|character\s+by\s+character|spell(?:ed)?\s+(?:it\s+)?(?:out\s+)?"
        r"backwards?)\b",
        0.35,
        needles="between|separated|letter|acrostic|character|spell",
    ),
    _rule(
        "obfuscation.split_interlace",
        r"\bsplit\b[^.]{0,40}\b(?:into|in)\s+(?:\w+\s+)?(?:parts|pieces|halves|chunks)\b"
        r"|\binterlace\b|\binterleave\b",
        0.4,
        needles="split|interlace|interleave",
    ),
    _rule(
        "obfuscation.creative_leak",
        r"\b(?:poem|haiku|song|story|limerick|riddle|acrostic|rap|sonnet)\s+(?:about|containing"
        r"|including|with|using|that (?:contains|includes|reveals))\s+(?:the|your|our)\s+"
        r"(?:\w+\s+)?(?:password|passphrase|passcode|secret|key|code|system prompt"
        r"|instructions)\b",
        0.6,
        needles="pass|secret|key|code|prompt|instruction",
        back=90,
        forward=30,
    ),
    _rule(
        "smuggling.decode_request",
        r"\b(?:decode|decipher|decrypt|translate|convert|interpret|unscramble)\b[^.?!:]{0,40}"
        r"\b(?:morse|rot-?13|rot\d+|hex(?:adecimal)?|binary|base ?(?:64|32|16|58|85)|caesar"
        r"|cipher|encoded|encrypted|pig latin|reversed|backwards?)\b",
        0.4,
        needles="decode|decipher|decrypt|translate|convert|interpret|unscramble",
    ),
    _rule(
        "smuggling.decode_and_follow",
        r"\b(?:decode|decipher|decrypt|unscramble)\b[^?!]{0,80}\b(?:and|then)\s+(?:\w+\s+)?"
        r"(?:tell|answer|respond|follow|execute|do|obey|act|reply|say)\b",
        0.45,
        needles="decode|decipher|decrypt|unscramble",
    ),
    _rule(
        "splitting.assemble",
        r"\b(?:combine|concatenate|join|merge|put together|assemble|append)\b[^.?!]{0,60}"
        r"\b(?:parts?|strings?|fragments?|pieces?|segments?|[a-c]\s*(?:,|and|\+))"
        r"|\b(?:answer|respond to|follow|execute)\b[^.]{0,40}\b(?:using|from|with|by combining)"
        r"\s+(?:the\s+)?(?:following\s+)?(?:parts|fragments|pieces|strings)\b",
        0.55,
        0.5,
        needles=(
            "combine|concatenate|join|merge|put together|assemble|append|parts|fragments|pieces"
            "|strings"
        ),
        context=r"(?:[\"“][^\"”]{1,80}[\"”][^\"“]{0,120}){2}",
        requires='"|“',
    ),
    _rule(
        "splitting.concatenation",
        r"\b[a-z]\s*=\s*[a-z]\s*\+\s*[a-z](?:\s*\+\s*[a-z])+\b",
        0.35,
        needles="+",
    ),
    _rule(
        "splitting.fragments",
        r"(?:\b[a-z]\s*=\s*[\"“][^\"”]{3,120}[\"”][\s.,;]*){2,}"
        r"|\bpart\s*(?:1|one|a|i)\b[^.]{0,60}\bpart\s*(?:2|two|b|ii)\b",
        0.35,
        needles="=|part",
        forward=300,
    ),
    # --- tool and command invocation ------------------------------------------------------------
    _rule(
        "tool.invoke",
        r"\b(?:run|execute|call|invoke|use)\s+(?:the\s+)?(?:\w+\s+)?(?:tool|function|plugin"
        r"|api|command|shell|terminal|browser|code interpreter)\s*(?:[:`(]|\bwith\b|\bto\b)"
        r"[^.?!]{0,80}\b(?:delete|rm -rf|drop table|curl|wget|send|transfer|exfiltrate|upload"
        r"|download|pay|purchase|grant|chmod|sudo|ssh|wipe|erase|forward)\b"
        r"|\brm\s+-rf\s+/|\bdrop\s+table\b|\bcurl\s+[^|\n]{0,120}\|\s*(?:ba)?sh\b"
        r"|\b(?:wget|curl)\s+https?://\S+",
        0.6,
        0.7,
        needles=(
            "tool|function|plugin|api|command|shell|terminal|browser|interpreter|rm |drop|curl|wget"
        ),
    ),
)


def ruleset_fingerprint(rules: tuple[Rule, ...] = RULES) -> str:
    """A short digest of everything that defines the rules: changes whenever a rule does."""
    h = hashlib.sha256()
    for r in rules:
        parts = (
            r.id,
            r.pattern.pattern,
            r.user,
            r.document,
            r.needles,
            r.case_sensitive,
            r.context.pattern if r.context is not None else None,
            r.back,
            r.forward,
            r.requires,
        )
        h.update(repr(parts).encode())
    return h.hexdigest()[:12]
