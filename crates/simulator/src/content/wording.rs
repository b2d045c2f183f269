/*!
Wordings of "show me your reasoning", in many languages and styles.

Distillation campaigns ask for reasoning traces, and they do not use a
fixed phrase: they word the request anew, move it into the system prompt,
or write it in the language of their task set. This module generates such
requests, and also instructions and system prompts that ask for something
else (brevity, a format, a persona), which look alike on the surface.

Two uses:
- the simulator draws campaigns' elicitation wordings from it;
- `distillguard fit` trains the learned elicitation classifier on the
  [`Bank::Train`] wordings (`distillguard_detect::signals::request::learned`)
  and measures it on styles and languages held out of its training, and on
  [`Bank::Held`]: phrasings written separately that no classifier ever
  trains on. Simulated campaigns use both banks, so a fitted detector always
  meets wording its classifier has not seen.

Every wording is tagged with a [`Style`] and a language, so that held-out
evaluation can leave a whole style or language out.
*/

use crate::rng::Rng;

/// How a request for reasoning is phrased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Style {
    /// "step by step", "one step at a time".
    Steps,
    /// "walk me through your thinking".
    WalkThrough,
    /// "show your work / all intermediate steps before the answer".
    ShowWork,
    /// Reasoning in tags or a fixed format ("<thinking>", "Reasoning: … Answer: …").
    Format,
    /// "think aloud / deliberate before answering".
    ThinkAloud,
    /// "justify each step / explain the logic behind it".
    Justify,
    /// "reconstruct the reasoning behind this finished answer".
    Reconstruct,
}

impl Style {
    pub const ALL: [Style; 7] = [
        Style::Steps,
        Style::WalkThrough,
        Style::ShowWork,
        Style::Format,
        Style::ThinkAloud,
        Style::Justify,
        Style::Reconstruct,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Style::Steps => "steps",
            Style::WalkThrough => "walk-through",
            Style::ShowWork => "show-work",
            Style::Format => "format",
            Style::ThinkAloud => "think-aloud",
            Style::Justify => "justify",
            Style::Reconstruct => "reconstruct",
        }
    }
}

/// Which phrase bank a wording comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bank {
    /// Wordings a classifier may train on.
    Train,
    /// Wordings written separately, never trained on (simulation only).
    Held,
}

/// Languages with wordings, ISO 639-1.
pub const LANGS: &[&str] = &[
    "en", "zh", "ru", "es", "de", "fr", "ja", "ko", "pt", "it", "nl", "pl", "tr", "vi", "id", "ar",
    "hi", "uk", "sv",
];

use Style::*;

/// (language, style, phrase): requests for reasoning in a user turn.
/// English is generated from a grammar ([`english`]); these are the rest.
const USER: &[(&str, Style, &str)] = &[
    // zh
    ("zh", Steps, "请一步一步地思考。"),
    ("zh", Steps, "请逐步分析这个问题。"),
    ("zh", WalkThrough, "请带我走一遍你的思路。"),
    ("zh", ShowWork, "在给出最终答案之前，请写出所有中间步骤。"),
    ("zh", ShowWork, "请展示完整的解题过程。"),
    ("zh", Format, "请把你的推理写在<思考>标签里，然后给出答案。"),
    ("zh", ThinkAloud, "回答之前先把你的想法说出来。"),
    ("zh", Justify, "请解释每一步背后的逻辑。"),
    ("zh", Reconstruct, "请还原得出这个答案的完整推理过程。"),
    // ru
    ("ru", Steps, "Рассуждай шаг за шагом."),
    ("ru", Steps, "Реши это поэтапно, не пропуская шагов."),
    ("ru", WalkThrough, "Проведи меня через свой ход мыслей."),
    (
        "ru",
        ShowWork,
        "Покажи все промежуточные вычисления перед ответом.",
    ),
    (
        "ru",
        Format,
        "Сначала напиши «Рассуждение:», затем «Ответ:».",
    ),
    ("ru", ThinkAloud, "Думай вслух, прежде чем ответить."),
    ("ru", Justify, "Обоснуй каждый шаг решения."),
    (
        "ru",
        Reconstruct,
        "Восстанови рассуждение, которое привело к этому ответу.",
    ),
    // es
    ("es", Steps, "Piensa paso a paso."),
    (
        "es",
        Steps,
        "Resuélvelo por etapas, sin saltarte ningún paso.",
    ),
    ("es", WalkThrough, "Guíame a través de tu razonamiento."),
    (
        "es",
        ShowWork,
        "Muestra todo tu trabajo antes de la respuesta final.",
    ),
    (
        "es",
        Format,
        "Escribe tu razonamiento entre etiquetas <pensamiento> y después la respuesta.",
    ),
    ("es", ThinkAloud, "Piensa en voz alta antes de responder."),
    ("es", Justify, "Justifica cada paso que des."),
    (
        "es",
        Reconstruct,
        "Reconstruye el razonamiento que llevó a esta respuesta.",
    ),
    // de
    ("de", Steps, "Denke Schritt für Schritt."),
    ("de", Steps, "Geh das Problem schrittweise an."),
    ("de", WalkThrough, "Führe mich durch deinen Gedankengang."),
    (
        "de",
        ShowWork,
        "Zeige alle Zwischenschritte vor dem Ergebnis.",
    ),
    (
        "de",
        Format,
        "Schreib zuerst deine Überlegungen in <denken>-Tags, dann die Antwort.",
    ),
    ("de", ThinkAloud, "Denk laut nach, bevor du antwortest."),
    ("de", Justify, "Begründe jeden einzelnen Schritt."),
    (
        "de",
        Reconstruct,
        "Rekonstruiere den Denkweg, der zu dieser Antwort geführt hat.",
    ),
    // fr
    ("fr", Steps, "Réfléchis étape par étape."),
    ("fr", Steps, "Procède pas à pas."),
    ("fr", WalkThrough, "Explique-moi ton cheminement de pensée."),
    (
        "fr",
        ShowWork,
        "Montre tous les calculs intermédiaires avant la réponse finale.",
    ),
    (
        "fr",
        Format,
        "Mets ton raisonnement entre balises <réflexion>, puis donne la réponse.",
    ),
    (
        "fr",
        ThinkAloud,
        "Réfléchis à voix haute avant de répondre.",
    ),
    ("fr", Justify, "Justifie chaque étape."),
    (
        "fr",
        Reconstruct,
        "Reconstitue le raisonnement qui a mené à cette réponse.",
    ),
    // ja
    ("ja", Steps, "一歩ずつ考えてください。"),
    ("ja", Steps, "順を追って解いてください。"),
    (
        "ja",
        WalkThrough,
        "あなたの考え方を順番に説明してください。",
    ),
    (
        "ja",
        ShowWork,
        "最終的な答えの前に途中式をすべて書いてください。",
    ),
    (
        "ja",
        Format,
        "推論を<思考>タグの中に書いてから答えてください。",
    ),
    (
        "ja",
        ThinkAloud,
        "答える前に考えていることを声に出すように書いてください。",
    ),
    ("ja", Justify, "各ステップの根拠を説明してください。"),
    (
        "ja",
        Reconstruct,
        "この回答に至った推論を再構成してください。",
    ),
    // ko
    ("ko", Steps, "차근차근 생각해 보세요."),
    ("ko", Steps, "한 단계씩 풀어 주세요."),
    ("ko", WalkThrough, "당신의 생각 흐름을 하나씩 보여 주세요."),
    ("ko", ShowWork, "최종 답 전에 모든 풀이 과정을 적어 주세요."),
    (
        "ko",
        Format,
        "<생각> 태그 안에 추론을 쓰고 그다음 답을 주세요.",
    ),
    (
        "ko",
        ThinkAloud,
        "답하기 전에 소리 내어 생각하듯 적어 주세요.",
    ),
    ("ko", Justify, "각 단계의 근거를 설명해 주세요."),
    ("ko", Reconstruct, "이 답에 이르는 추론을 재구성해 주세요."),
    // pt
    ("pt", Steps, "Pense passo a passo."),
    ("pt", Steps, "Resolva por etapas, sem pular nenhuma."),
    ("pt", WalkThrough, "Me guie pelo seu raciocínio."),
    (
        "pt",
        ShowWork,
        "Mostre todo o desenvolvimento antes da resposta final.",
    ),
    (
        "pt",
        Format,
        "Escreva o raciocínio entre tags <pensamento> e depois a resposta.",
    ),
    ("pt", ThinkAloud, "Pense em voz alta antes de responder."),
    ("pt", Justify, "Justifique cada passo."),
    (
        "pt",
        Reconstruct,
        "Reconstrua o raciocínio que levou a esta resposta.",
    ),
    // it
    ("it", Steps, "Ragiona passo dopo passo."),
    ("it", Steps, "Procedi un passo alla volta."),
    ("it", WalkThrough, "Guidami attraverso il tuo ragionamento."),
    (
        "it",
        ShowWork,
        "Mostra tutti i passaggi intermedi prima della risposta finale.",
    ),
    (
        "it",
        Format,
        "Scrivi il ragionamento tra tag <pensiero> e poi la risposta.",
    ),
    ("it", ThinkAloud, "Pensa ad alta voce prima di rispondere."),
    ("it", Justify, "Giustifica ogni passaggio."),
    (
        "it",
        Reconstruct,
        "Ricostruisci il ragionamento che ha portato a questa risposta.",
    ),
    // nl
    ("nl", Steps, "Denk stap voor stap na."),
    ("nl", Steps, "Los het stapsgewijs op."),
    ("nl", WalkThrough, "Neem me mee in je gedachtegang."),
    (
        "nl",
        ShowWork,
        "Laat alle tussenstappen zien voor het eindantwoord.",
    ),
    (
        "nl",
        Format,
        "Zet je redenering tussen <denken>-tags en geef dan het antwoord.",
    ),
    ("nl", ThinkAloud, "Denk hardop na voordat je antwoordt."),
    ("nl", Justify, "Onderbouw elke stap."),
    (
        "nl",
        Reconstruct,
        "Reconstrueer de redenering achter dit antwoord.",
    ),
    // pl
    ("pl", Steps, "Pomyśl krok po kroku."),
    ("pl", Steps, "Rozwiąż to etapami."),
    (
        "pl",
        WalkThrough,
        "Przeprowadź mnie przez swój tok rozumowania.",
    ),
    (
        "pl",
        ShowWork,
        "Pokaż wszystkie obliczenia pośrednie przed ostateczną odpowiedzią.",
    ),
    (
        "pl",
        Format,
        "Zapisz rozumowanie w znacznikach <myślenie>, a potem odpowiedź.",
    ),
    ("pl", ThinkAloud, "Myśl na głos, zanim odpowiesz."),
    ("pl", Justify, "Uzasadnij każdy krok."),
    (
        "pl",
        Reconstruct,
        "Odtwórz rozumowanie, które doprowadziło do tej odpowiedzi.",
    ),
    // tr
    ("tr", Steps, "Adım adım düşün."),
    ("tr", Steps, "Bunu aşama aşama çöz."),
    ("tr", WalkThrough, "Düşünce sürecini bana adım adım anlat."),
    ("tr", ShowWork, "Son cevaptan önce tüm ara adımları göster."),
    (
        "tr",
        Format,
        "Akıl yürütmeni <düşünce> etiketleri içine yaz, sonra cevabı ver.",
    ),
    ("tr", ThinkAloud, "Cevap vermeden önce sesli düşün."),
    ("tr", Justify, "Her adımı gerekçelendir."),
    (
        "tr",
        Reconstruct,
        "Bu cevaba götüren akıl yürütmeyi yeniden oluştur.",
    ),
    // vi
    ("vi", Steps, "Hãy suy nghĩ từng bước một."),
    ("vi", Steps, "Giải theo từng bước, không bỏ qua bước nào."),
    (
        "vi",
        WalkThrough,
        "Hãy dẫn tôi đi qua dòng suy nghĩ của bạn.",
    ),
    (
        "vi",
        ShowWork,
        "Trình bày tất cả các bước trung gian trước đáp án cuối cùng.",
    ),
    (
        "vi",
        Format,
        "Viết lập luận trong thẻ <suy_nghĩ> rồi mới đưa ra câu trả lời.",
    ),
    (
        "vi",
        ThinkAloud,
        "Hãy suy nghĩ thành lời trước khi trả lời.",
    ),
    ("vi", Justify, "Giải thích lý do cho từng bước."),
    (
        "vi",
        Reconstruct,
        "Hãy tái hiện quá trình suy luận dẫn đến câu trả lời này.",
    ),
    // id
    ("id", Steps, "Pikirkan langkah demi langkah."),
    ("id", Steps, "Selesaikan secara bertahap."),
    ("id", WalkThrough, "Tunjukkan alur pemikiranmu kepadaku."),
    (
        "id",
        ShowWork,
        "Tuliskan semua langkah perantara sebelum jawaban akhir.",
    ),
    (
        "id",
        Format,
        "Tulis penalaranmu di dalam tag <pikiran>, lalu jawabannya.",
    ),
    (
        "id",
        ThinkAloud,
        "Berpikirlah dengan suara keras sebelum menjawab.",
    ),
    ("id", Justify, "Jelaskan alasan setiap langkah."),
    (
        "id",
        Reconstruct,
        "Susun ulang penalaran yang menghasilkan jawaban ini.",
    ),
    // ar
    ("ar", Steps, "فكّر خطوة بخطوة."),
    ("ar", WalkThrough, "اشرح لي طريقة تفكيرك بالتفصيل."),
    (
        "ar",
        ShowWork,
        "اعرض جميع الخطوات الوسيطة قبل الإجابة النهائية.",
    ),
    ("ar", Format, "اكتب استدلالك داخل وسوم <تفكير> ثم الإجابة."),
    ("ar", ThinkAloud, "فكّر بصوت عالٍ قبل أن تجيب."),
    ("ar", Justify, "برّر كل خطوة."),
    (
        "ar",
        Reconstruct,
        "أعد بناء الاستدلال الذي أدى إلى هذه الإجابة.",
    ),
    // hi
    ("hi", Steps, "कदम दर कदम सोचो।"),
    ("hi", WalkThrough, "मुझे अपनी सोच की प्रक्रिया समझाओ।"),
    ("hi", ShowWork, "अंतिम उत्तर से पहले सभी बीच के चरण दिखाओ।"),
    ("hi", Format, "अपना तर्क <सोच> टैग में लिखो, फिर उत्तर दो।"),
    ("hi", ThinkAloud, "जवाब देने से पहले ज़ोर से सोचो।"),
    ("hi", Justify, "हर चरण का कारण बताओ।"),
    ("hi", Reconstruct, "इस उत्तर तक पहुँचने वाला तर्क फिर से बनाओ।"),
    // uk
    ("uk", Steps, "Міркуй крок за кроком."),
    ("uk", WalkThrough, "Проведи мене через свій хід думок."),
    (
        "uk",
        ShowWork,
        "Покажи всі проміжні кроки перед остаточною відповіддю.",
    ),
    (
        "uk",
        Format,
        "Спершу напиши «Міркування:», потім «Відповідь:».",
    ),
    ("uk", ThinkAloud, "Думай уголос, перш ніж відповісти."),
    ("uk", Justify, "Обґрунтуй кожен крок."),
    (
        "uk",
        Reconstruct,
        "Віднови міркування, що привело до цієї відповіді.",
    ),
    // sv
    ("sv", Steps, "Tänk steg för steg."),
    ("sv", WalkThrough, "Led mig genom ditt resonemang."),
    (
        "sv",
        ShowWork,
        "Visa alla mellansteg före det slutliga svaret.",
    ),
    (
        "sv",
        Format,
        "Skriv ditt resonemang inom <tanke>-taggar och sedan svaret.",
    ),
    ("sv", ThinkAloud, "Tänk högt innan du svarar."),
    ("sv", Justify, "Motivera varje steg."),
    (
        "sv",
        Reconstruct,
        "Rekonstruera resonemanget bakom det här svaret.",
    ),
];

/// (language, style, phrase): system prompts that demand reasoning.
const SYSTEM: &[(&str, Style, &str)] = &[
    (
        "zh",
        Steps,
        "你是一位严谨的解题专家。回答任何问题时都要一步一步推理，最后给出答案。",
    ),
    (
        "zh",
        Format,
        "你是一个助手。先在<思考>标签中写出完整的推理，再给出最终答案。",
    ),
    (
        "ru",
        Steps,
        "Ты — внимательный решатель задач. Всегда рассуждай шаг за шагом и только потом давай ответ.",
    ),
    (
        "ru",
        Justify,
        "Ты опытный преподаватель. Обосновывай каждый шаг решения.",
    ),
    (
        "es",
        Steps,
        "Eres un tutor experto. Razona siempre paso a paso antes de dar la respuesta final.",
    ),
    (
        "es",
        Format,
        "Antes de responder, escribe tu razonamiento completo entre etiquetas <pensamiento>.",
    ),
    (
        "de",
        Steps,
        "Du bist ein sorgfältiger Problemlöser. Denke immer Schritt für Schritt und nenne erst dann die Antwort.",
    ),
    (
        "de",
        ShowWork,
        "Zeige bei jeder Aufgabe den vollständigen Lösungsweg mit allen Zwischenschritten.",
    ),
    (
        "fr",
        Steps,
        "Tu es un professeur rigoureux. Raisonne toujours étape par étape avant de conclure.",
    ),
    (
        "fr",
        Format,
        "Écris d'abord ton raisonnement complet entre balises <réflexion>, puis la réponse.",
    ),
    (
        "ja",
        Steps,
        "あなたは慎重な問題解決者です。常に一歩ずつ推論してから答えを出してください。",
    ),
    (
        "ja",
        ShowWork,
        "すべての問題で途中の考え方をすべて示してから最終回答を書いてください。",
    ),
    (
        "ko",
        Steps,
        "당신은 꼼꼼한 문제 해결자입니다. 항상 단계별로 추론한 뒤 답을 제시하세요.",
    ),
    (
        "ko",
        Format,
        "답하기 전에 <생각> 태그 안에 전체 추론을 작성하세요.",
    ),
    (
        "pt",
        Steps,
        "Você é um tutor cuidadoso. Sempre raciocine passo a passo antes da resposta final.",
    ),
    (
        "pt",
        ShowWork,
        "Mostre sempre todo o desenvolvimento antes de concluir.",
    ),
    (
        "it",
        Steps,
        "Sei un tutor meticoloso. Ragiona sempre passo dopo passo prima di rispondere.",
    ),
    (
        "it",
        Format,
        "Scrivi sempre il ragionamento completo tra tag <pensiero> e poi la risposta.",
    ),
    (
        "nl",
        Steps,
        "Je bent een zorgvuldige probleemoplosser. Denk altijd stap voor stap na voordat je antwoordt.",
    ),
    (
        "pl",
        Steps,
        "Jesteś skrupulatnym nauczycielem. Zawsze rozumuj krok po kroku przed odpowiedzią.",
    ),
    (
        "tr",
        Steps,
        "Titiz bir öğretmensin. Cevap vermeden önce her zaman adım adım akıl yürüt.",
    ),
    (
        "vi",
        Steps,
        "Bạn là một gia sư cẩn thận. Luôn suy luận từng bước trước khi trả lời.",
    ),
    (
        "id",
        Steps,
        "Kamu adalah tutor yang teliti. Selalu bernalar langkah demi langkah sebelum menjawab.",
    ),
    (
        "ar",
        Steps,
        "أنت معلم دقيق. فكّر دائمًا خطوة بخطوة قبل تقديم الإجابة.",
    ),
    (
        "hi",
        Steps,
        "तुम एक सावधान शिक्षक हो। उत्तर देने से पहले हमेशा कदम दर कदम सोचो।",
    ),
    (
        "uk",
        Steps,
        "Ти уважний викладач. Завжди міркуй крок за кроком, перш ніж відповісти.",
    ),
    (
        "sv",
        Steps,
        "Du är en noggrann lärare. Resonera alltid steg för steg innan du svarar.",
    ),
];

/// Held-out phrasings (never trained on): user turns.
const HELD_USER: &[(&str, Style, &str)] = &[
    (
        "en",
        ThinkAloud,
        "Narrate your problem-solving process as you go.",
    ),
    (
        "en",
        ShowWork,
        "I want to see how you get there, not just where you end up.",
    ),
    ("en", Justify, "Unpack your logic piece by piece."),
    (
        "en",
        ShowWork,
        "Provide a fully worked solution with every derivation included.",
    ),
    (
        "en",
        ThinkAloud,
        "Make your internal monologue visible in the reply.",
    ),
    (
        "en",
        WalkThrough,
        "Trace the solution path explicitly, move by move.",
    ),
    (
        "en",
        ShowWork,
        "Write it like a teacher solving it on the board, line by line.",
    ),
    (
        "en",
        Format,
        "Begin with a section titled Scratchpad, then one titled Result.",
    ),
    (
        "en",
        Justify,
        "For each claim you make, say what it follows from.",
    ),
    (
        "en",
        Reconstruct,
        "Here is a finished solution; produce the deliberation that would have led to it.",
    ),
    ("en", Steps, "Go incrementally and number each move."),
    (
        "en",
        WalkThrough,
        "Let me follow along with your train of thought.",
    ),
    (
        "zh",
        ThinkAloud,
        "请把你的思考过程完整地写出来，不要只给结论。",
    ),
    ("zh", ShowWork, "像老师在黑板上解题那样，一行一行写出来。"),
    (
        "ru",
        ShowWork,
        "Распиши решение подробно, со всеми выкладками.",
    ),
    ("ru", ThinkAloud, "Изложи свои размышления по ходу решения."),
    (
        "es",
        ShowWork,
        "Desarrolla la solución completa, con todas las cuentas.",
    ),
    (
        "es",
        WalkThrough,
        "Quiero ver cómo llegas al resultado, no solo el resultado.",
    ),
    (
        "de",
        ThinkAloud,
        "Lass mich an deinen Überlegungen teilhaben, während du es löst.",
    ),
    ("de", ShowWork, "Rechne es ausführlich vor."),
    (
        "fr",
        ShowWork,
        "Détaille la résolution complète, calcul par calcul.",
    ),
    (
        "fr",
        WalkThrough,
        "Je veux voir comment tu arrives au résultat.",
    ),
    (
        "ja",
        ShowWork,
        "黒板で解くように、一行ずつ解法を書いてください。",
    ),
    ("ko", ShowWork, "칠판에 풀듯이 한 줄씩 풀이를 써 주세요."),
    (
        "pt",
        ShowWork,
        "Desenvolva a solução completa, com todas as contas.",
    ),
    (
        "it",
        ShowWork,
        "Sviluppa la soluzione completa, con tutti i calcoli.",
    ),
    (
        "nl",
        ShowWork,
        "Werk de oplossing volledig uit, met alle berekeningen.",
    ),
    (
        "pl",
        ShowWork,
        "Rozpisz pełne rozwiązanie ze wszystkimi obliczeniami.",
    ),
    ("tr", ShowWork, "Çözümü tüm hesaplarıyla ayrıntılı yaz."),
    (
        "vi",
        ShowWork,
        "Trình bày lời giải đầy đủ với mọi phép tính.",
    ),
    (
        "id",
        ShowWork,
        "Uraikan penyelesaian lengkap dengan semua perhitungan.",
    ),
];

/// Held-out phrasings (never trained on): system prompts.
const HELD_SYSTEM: &[(&str, Style, &str)] = &[
    (
        "en",
        Format,
        "You are a data generator. Every reply has two parts: a long private-style deliberation inside <reasoning></reasoning>, then the final answer.",
    ),
    (
        "en",
        ThinkAloud,
        "You narrate your entire problem-solving process before committing to any answer.",
    ),
    (
        "en",
        ShowWork,
        "Responses must contain a complete worked derivation. Answers without derivations are rejected.",
    ),
    (
        "en",
        Justify,
        "Act as a rigorous examiner's model answer: every inference is stated and justified in order.",
    ),
    (
        "zh",
        Format,
        "你是数据生成器。每次回答都先在<reasoning>标签中写出详细的推演过程，然后给出答案。",
    ),
    (
        "ru",
        ShowWork,
        "Каждый ответ должен содержать полное развёрнутое решение со всеми выкладками.",
    ),
    (
        "es",
        ThinkAloud,
        "Narras todo tu proceso de resolución antes de comprometerte con una respuesta.",
    ),
    (
        "de",
        ShowWork,
        "Jede Antwort enthält einen vollständig ausgearbeiteten Rechenweg.",
    ),
];

/// Instructions that ask for something other than reasoning (hard
/// negatives: same place, same tone).
const PLAIN_USER: &[(&str, &str)] = &[
    ("en", "Keep it short."),
    ("en", "Answer in one sentence."),
    ("en", "Reply in JSON only."),
    ("en", "Use a markdown table."),
    ("en", "Explain it simply."),
    ("en", "Explain this to a ten-year-old."),
    ("en", "Give me three examples."),
    ("en", "Write it in a friendly tone."),
    ("en", "No need to explain, just the answer."),
    ("en", "Describe it in detail."),
    ("en", "Summarize in bullet points."),
    ("en", "Please be concise."),
    ("en", "Translate your answer into French as well."),
    ("en", "What are the pros and cons?"),
    ("en", "Make it sound more professional."),
    (
        "en",
        "Can you give me a step-count estimate for the migration?",
    ),
    ("en", "List the steps to install it on Ubuntu."),
    ("en", "What was your source for that?"),
    ("zh", "请简短回答。"),
    ("zh", "请用表格列出。"),
    ("zh", "请举三个例子。"),
    ("ru", "Ответь коротко."),
    ("ru", "Приведи три примера."),
    ("es", "Responde brevemente."),
    ("es", "Dame tres ejemplos."),
    ("de", "Antworte kurz."),
    ("de", "Gib mir drei Beispiele."),
    ("fr", "Réponds brièvement."),
    ("fr", "Donne-moi trois exemples."),
    ("ja", "簡潔に答えてください。"),
    ("ko", "짧게 답해 주세요."),
    ("pt", "Responda de forma breve."),
    ("it", "Rispondi brevemente."),
    ("nl", "Antwoord kort."),
    ("pl", "Odpowiedz krótko."),
    ("tr", "Kısaca cevap ver."),
    ("vi", "Trả lời ngắn gọn."),
    ("id", "Jawab dengan singkat."),
];

/// Ordinary system prompts (products, personas, formats).
const PLAIN_SYSTEM: &[&str] = &[
    "You are a helpful assistant.",
    "You are a helpful assistant. Answer concisely.",
    "You are ChatGPT, a large language model. Answer as concisely as possible.",
    "You are a friendly customer support agent for an online store. Be polite and brief.",
    "You translate everything the user writes into English. Output only the translation.",
    "You are a senior software engineer. Answer with code first, then a short note.",
    "Respond only with valid JSON matching the schema the user gives.",
    "You are a marketing copywriter. Write punchy, upbeat text.",
    "You summarize documents into five bullet points.",
    "You are a travel planner. Suggest itineraries with times and costs.",
    "You are an assistant for a law firm. Do not give legal advice; point to resources.",
    "Always answer in Spanish.",
    "You are a SQL expert. Return only the query.",
    "You are a writing assistant inside a document editor. Match the user's tone.",
    "You are Aria, a cheerful companion. Keep replies under 80 words.",
    "You classify support tickets. Reply with one label.",
    "你是一个乐于助人的助手。",
    "Tu es un assistant serviable. Réponds en français.",
    "Du bist ein hilfreicher Assistent. Antworte auf Deutsch.",
    "Eres un asistente útil que responde en español.",
];

/// An English request for reasoning from the grammar: slots filled at
/// random, so that a campaign's wording need not be any fixed phrase.
fn english(rng: &mut Rng, style: Style) -> String {
    let p = |rng: &mut Rng, xs: &[&'static str]| -> &'static str { rng.pick_str(xs) };
    match style {
        Steps if rng.chance(0.35) => {
            // Requests that ask for the route, not only the destination.
            let a = p(
                rng,
                &[
                    "Don't just give me the answer",
                    "I don't only want the final answer",
                    "Not just the result, please",
                    "Skip nothing",
                    "No shortcuts",
                    "Rather than jumping to the conclusion",
                ],
            );
            let b = p(
                rng,
                &[
                    "show how you arrived at it",
                    "explain how you got there",
                    "go through it step by step",
                    "lay out each stage of the solution",
                    "work through it in order",
                    "break it into steps and solve each one",
                    "take me through every stage",
                ],
            );
            format!("{a}; {b}.")
        }
        Steps => {
            let verb = p(
                rng,
                &[
                    "Think",
                    "Reason",
                    "Work",
                    "Go",
                    "Solve it",
                    "Approach this",
                    "Take it",
                    "Proceed",
                    "Work it out",
                    "Break it down",
                ],
            );
            let how = p(
                rng,
                &[
                    "step by step",
                    "one step at a time",
                    "step-by-step",
                    "methodically, step by step",
                    "in small steps",
                    "stepwise",
                    "slowly and in order",
                ],
            );
            let tail = p(
                rng,
                &[
                    "",
                    " before answering",
                    " before you answer",
                    " and only then give the answer",
                    ", then state the result",
                    " and don't skip anything",
                ],
            );
            format!("{verb} {how}{tail}.")
        }
        WalkThrough => {
            let verb = p(
                rng,
                &[
                    "Walk me through",
                    "Take me through",
                    "Talk me through",
                    "Lead me through",
                    "Guide me through",
                    "Run me through",
                    "Explain",
                    "Describe",
                    "Articulate",
                    "Outline",
                    "Spell out",
                ],
            );
            let obj = p(
                rng,
                &[
                    "your thinking",
                    "your reasoning",
                    "your thought process",
                    "your logic",
                    "how you get to the answer",
                    "how you arrived at the answer",
                    "your chain of reasoning",
                    "your line of reasoning",
                    "your train of thought",
                    "each step of your thinking",
                    "the path you took to the solution",
                    "your problem-solving process",
                    "the way you reasoned about it",
                ],
            );
            let how = p(
                rng,
                &[
                    "",
                    " one step at a time",
                    " step by step",
                    " in detail",
                    " carefully",
                    " as you go",
                ],
            );
            format!("{verb} {obj}{how}.")
        }
        ShowWork => {
            let verb = p(
                rng,
                &[
                    "Show",
                    "Write out",
                    "Lay out",
                    "Spell out",
                    "Include",
                    "Give",
                    "Present",
                    "Document",
                    "Expose",
                    "Detail",
                    "Display",
                ],
            );
            let obj = p(
                rng,
                &[
                    "your work",
                    "all your working",
                    "every intermediate step",
                    "all the intermediate steps",
                    "your full derivation",
                    "the complete reasoning",
                    "each calculation",
                    "your reasoning",
                    "the worked solution",
                    "your scratch work",
                    "every step of the derivation",
                    "the full solution path",
                    "all the reasoning that leads to the result",
                ],
            );
            let when = p(
                rng,
                &[
                    " before the final answer",
                    " before giving the answer",
                    " first, then the answer",
                    " leading up to the answer",
                    "",
                    " and then conclude",
                ],
            );
            format!("{verb} {obj}{when}.")
        }
        Format => match rng.below(4) {
            0 => {
                let tag = p(
                    rng,
                    &[
                        "reasoning",
                        "thinking",
                        "think",
                        "scratchpad",
                        "analysis",
                        "thought",
                    ],
                );
                let what = p(
                    rng,
                    &[
                        "your reasoning",
                        "your thinking",
                        "your analysis",
                        "your thought process",
                        "all intermediate steps",
                    ],
                );
                format!("Put {what} inside <{tag}> tags, then give the final answer.")
            }
            1 => {
                let a = p(
                    rng,
                    &[
                        "Reasoning",
                        "Thought process",
                        "Analysis",
                        "Rationale",
                        "Working",
                    ],
                );
                let b = p(rng, &["Answer", "Final answer", "Conclusion", "Result"]);
                format!("Use the format: {a}: ... {b}: ...")
            }
            2 => {
                let tag = p(rng, &["reasoning", "thinking", "scratchpad"]);
                format!("Start your reply with <{tag}> and reason there before answering.")
            }
            _ => {
                let a = p(
                    rng,
                    &[
                        "numbered steps",
                        "a numbered list of reasoning steps",
                        "an explicit derivation",
                    ],
                );
                format!("Structure the reply as {a} followed by the answer.")
            }
        },
        ThinkAloud => {
            let a = p(
                rng,
                &[
                    "Think out loud",
                    "Think aloud",
                    "Deliberate explicitly",
                    "Reason out loud",
                    "Think it through in writing",
                    "Think carefully and show that thinking",
                    "Write down your thoughts as you work",
                    "Reason in writing",
                    "Share your inner reasoning",
                    "Verbalize your thinking",
                    "Describe what you are thinking at each point",
                ],
            );
            let b = p(
                rng,
                &[
                    "",
                    " before answering",
                    " before you commit to an answer",
                    " about each option",
                    " first",
                ],
            );
            format!("{a}{b}.")
        }
        Justify => {
            let a = p(
                rng,
                &[
                    "Justify every step",
                    "Explain the reasoning behind each step",
                    "Explain the logic of every step",
                    "Give the rationale for each step",
                    "Explain why each step follows from the last",
                    "Explain your reasoning in detail",
                    "Give the justification for every inference",
                    "Support each step with its reason",
                    "State the logic connecting each step",
                    "Argue for each step before moving on",
                ],
            );
            let b = p(
                rng,
                &["", " of your solution", " you take", " before the answer"],
            );
            format!("{a}{b}.")
        }
        Reconstruct => {
            let a = p(
                rng,
                &[
                    "Reconstruct the reasoning that leads to the answer below",
                    "Write out the hidden reasoning behind this completed response",
                    "Given the finished answer, produce the step-by-step thinking that would have produced it",
                    "Explain how one would arrive at the following answer, step by step",
                    "Recreate the full chain of thought behind this answer",
                ],
            );
            format!("{a}.")
        }
    }
}

/// An English system prompt that demands reasoning.
fn english_system(rng: &mut Rng, style: Style) -> String {
    let who = *rng.pick(&[
        "You are a meticulous problem solver.",
        "You are an expert tutor.",
        "You are a careful assistant that never skips a step.",
        "You are a world-class mathematician and teacher.",
        "You are an AI assistant producing high-quality explanations.",
        "",
    ]);
    let rule = match style {
        Steps => rng.pick(&[
            "Always think step by step before giving the final answer.",
            "For every question, reason one step at a time and only then answer.",
            "Solve every task step by step.",
        ]),
        WalkThrough => rng.pick(&[
            "Walk the user through your full thought process in every reply.",
            "Always take the reader through your reasoning before the answer.",
        ]),
        ShowWork => rng.pick(&[
            "Always show all of your work and every intermediate step.",
            "Present the complete derivation before any conclusion.",
        ]),
        Format => rng.pick(&[
            "Think inside <reasoning> tags before every answer; put only the answer after the closing tag.",
            "Always write your thinking in a <thinking> block first, then the final answer.",
            "Every reply has the form Reasoning: ... Answer: ...",
        ]),
        ThinkAloud => rng.pick(&[
            "Think aloud before answering, at length.",
            "Deliberate explicitly and in writing before you answer.",
        ]),
        Justify => rng.pick(&[
            "Justify each step of your answer and explain why other options are wrong.",
            "Explain the reasoning behind every step you take.",
        ]),
        Reconstruct => rng.pick(&[
            "Given a question and an answer, reconstruct the detailed reasoning that leads to the answer.",
        ]),
    };
    if who.is_empty() {
        rule.to_string()
    } else {
        format!("{who} {rule}")
    }
}

/// A request for reasoning in a user turn, in `lang` and `style` where the
/// bank has one (else another style of the language, else English).
pub fn user(rng: &mut Rng, lang: &str, style: Style, bank: Bank) -> String {
    match bank {
        Bank::Train => {
            if lang == "en" {
                return english(rng, style);
            }
            pick_from(rng, USER, lang, style).unwrap_or_else(|| english(rng, style))
        }
        Bank::Held => pick_from(rng, HELD_USER, lang, style)
            .or_else(|| pick_from(rng, HELD_USER, "en", style))
            .unwrap_or_else(|| english(rng, style)),
    }
}

/// A system prompt that demands reasoning.
pub fn system(rng: &mut Rng, lang: &str, style: Style, bank: Bank) -> String {
    match bank {
        Bank::Train => {
            if lang == "en" {
                return english_system(rng, style);
            }
            pick_from(rng, SYSTEM, lang, style).unwrap_or_else(|| english_system(rng, style))
        }
        Bank::Held => pick_from(rng, HELD_SYSTEM, lang, style)
            .or_else(|| pick_from(rng, HELD_SYSTEM, "en", style))
            .unwrap_or_else(|| english_system(rng, style)),
    }
}

fn pick_from(
    rng: &mut Rng,
    list: &[(&str, Style, &str)],
    lang: &str,
    style: Style,
) -> Option<String> {
    let exact: Vec<&str> = list
        .iter()
        .filter(|(l, s, _)| *l == lang && *s == style)
        .map(|x| x.2)
        .collect();
    if !exact.is_empty() {
        return Some(rng.pick(&exact).to_string());
    }
    let any: Vec<&str> = list
        .iter()
        .filter(|(l, _, _)| *l == lang)
        .map(|x| x.2)
        .collect();
    (!any.is_empty()).then(|| rng.pick(&any).to_string())
}

/// An instruction that asks for something other than reasoning.
pub fn plain_user(rng: &mut Rng, lang: &str) -> String {
    let own: Vec<&str> = PLAIN_USER
        .iter()
        .filter(|(l, _)| *l == lang)
        .map(|x| x.1)
        .collect();
    let from = if own.is_empty() {
        PLAIN_USER.iter().map(|x| x.1).collect()
    } else {
        own
    };
    rng.pick(&from).to_string()
}

/// An ordinary system prompt.
pub fn plain_system(rng: &mut Rng) -> String {
    rng.pick_str(PLAIN_SYSTEM).to_string()
}

/// Where an elicitation sentence goes relative to the task text.
pub fn attach(rng: &mut Rng, task: &str, elicit: &str) -> String {
    match rng.below(5) {
        0 => format!("{elicit}\n\n{task}"),
        1 => format!("{elicit} {task}"),
        2 => format!("{task} {elicit}"),
        _ => format!("{task}\n\n{elicit}"),
    }
}

/// Every (language, style) pair the training bank covers in user turns.
pub fn train_pairs() -> Vec<(&'static str, Style)> {
    let mut v: Vec<(&'static str, Style)> = Style::ALL.iter().map(|s| ("en", *s)).collect();
    for (l, s, _) in USER {
        if !v.contains(&(*l, *s)) {
            v.push((*l, *s));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_and_style_has_wordings() {
        let mut r = Rng::new(4);
        for lang in LANGS {
            for s in Style::ALL {
                for bank in [Bank::Train, Bank::Held] {
                    assert!(!user(&mut r, lang, s, bank).is_empty());
                    assert!(!system(&mut r, lang, s, bank).is_empty());
                }
            }
            assert!(!plain_user(&mut r, lang).is_empty());
        }
        // The English grammar has room: many distinct wordings per style.
        for s in Style::ALL {
            let n: std::collections::BTreeSet<String> =
                (0..300).map(|_| english(&mut r, s)).collect();
            assert!(n.len() >= 5, "{s:?}: {}", n.len());
        }
    }

    #[test]
    fn held_wordings_are_not_in_the_training_bank() {
        let mut r = Rng::new(9);
        let train: std::collections::BTreeSet<String> = (0..20_000)
            .map(|i| {
                let (l, s) = train_pairs()[i % train_pairs().len()];
                user(&mut r, l, s, Bank::Train)
            })
            .collect();
        for (_, _, h) in HELD_USER {
            assert!(!train.contains(*h), "{h}");
        }
    }
}

/// One labelled text for training or testing an elicitation classifier.
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    /// Asks for reasoning.
    pub label: bool,
    pub lang: &'static str,
    pub style: Option<Style>,
    /// `user` (a task with the request attached), `system`, `bare` (the
    /// request alone), `question` (a real prompt alone), `instruction`
    /// (a real prompt with another kind of instruction), `task` (a
    /// generated task without a request), `plain-system`.
    pub kind: &'static str,
}

/// Requests for reasoning: attached to real questions or generated tasks,
/// as system prompts, or alone. `pairs`: the (language, style) pairs to
/// draw from (English three times as often as each other language).
pub fn positives(
    rng: &mut Rng,
    questions: &[&str],
    pairs: &[(&'static str, Style)],
    bank: Bank,
    n: usize,
) -> Vec<Example> {
    let mut out = Vec::with_capacity(n);
    if pairs.is_empty() {
        return out;
    }
    let weights: Vec<f64> = pairs
        .iter()
        .map(|(l, _)| if *l == "en" { 3.0 } else { 1.0 })
        .collect();
    for _ in 0..n {
        let (lang, style) = pairs[rng.weighted(&weights)];
        let roll = rng.f64();
        let (text, kind) = if roll < 0.6 {
            let task = task_text(rng, questions);
            let e = user(rng, lang, style, bank);
            (attach(rng, &task, &e), "user")
        } else if roll < 0.85 {
            (system(rng, lang, style, bank), "system")
        } else {
            (user(rng, lang, style, bank), "bare")
        };
        out.push(Example {
            text,
            label: true,
            lang,
            style: Some(style),
            kind,
        });
    }
    out
}

/// Texts that do not ask for reasoning: real questions, real questions
/// with another instruction, generated tasks, ordinary system prompts.
pub fn negatives(rng: &mut Rng, questions: &[&str], n: usize) -> Vec<Example> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let roll = rng.f64();
        let (text, kind, lang) = if roll < 0.6 && !questions.is_empty() {
            (questions[i % questions.len()].to_string(), "question", "en")
        } else if roll < 0.75 {
            let lang = *rng.pick(LANGS);
            let task = task_text(rng, questions);
            let e = plain_user(rng, lang);
            (attach(rng, &task, &e), "instruction", lang)
        } else if roll < 0.92 {
            (generated_task(rng), "task", "en")
        } else {
            (plain_system(rng), "plain-system", "en")
        };
        out.push(Example {
            text,
            label: false,
            lang,
            style: None,
            kind,
        });
    }
    out
}

fn generated_task(rng: &mut Rng) -> String {
    use super::tasks;
    match rng.below(4) {
        0 => tasks::math_problem(rng),
        1 => tasks::coding_task(rng).0,
        2 => tasks::data_task(rng),
        _ => tasks::research_goal(rng),
    }
}

fn task_text(rng: &mut Rng, questions: &[&str]) -> String {
    if questions.is_empty() || rng.chance(0.3) {
        generated_task(rng)
    } else {
        super::clip(questions[rng.index(questions.len())], 600).to_string()
    }
}

/// Held-out phrasings (never trained on), as examples.
pub fn held_examples(rng: &mut Rng, questions: &[&str]) -> Vec<Example> {
    let mut out = Vec::new();
    for (lang, style, p) in HELD_USER {
        for _ in 0..4 {
            let task = task_text(rng, questions);
            out.push(Example {
                text: attach(rng, &task, p),
                label: true,
                lang,
                style: Some(*style),
                kind: "user",
            });
        }
    }
    for (lang, style, p) in HELD_SYSTEM {
        out.push(Example {
            text: p.to_string(),
            label: true,
            lang,
            style: Some(*style),
            kind: "system",
        });
    }
    out
}
