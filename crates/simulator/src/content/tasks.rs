/*!
Task generators: the variable part of prompts.

Distillation campaigns keep a prompt's structure and vary its content
(tasks, numbers, topics, languages) so that no two requests are literal
copies. These generators supply that content: arithmetic word problems,
coding specifications, small CSV datasets, research topics, sensitive
topics for "censorship-safe" rewrites, screen tasks for computer use.
*/

use crate::rng::Rng;

pub const NAMES: &[&str] = &[
    "Alice", "Bob", "Chen", "Dmitri", "Emma", "Fatima", "Giulia", "Hiro", "Ines", "Jamal", "Kofi",
    "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor",
    "Wen", "Yusuf", "Zara",
];

const ITEMS: &[&str] = &[
    "apple",
    "notebook",
    "ticket",
    "cupcake",
    "bicycle part",
    "lamp",
    "t-shirt",
    "book",
    "mug",
    "plant",
    "phone case",
    "pencil",
];

pub const TOPICS: &[&str] = &[
    "how vaccines train the immune system",
    "the causes of the 2008 financial crisis",
    "how transformers use attention",
    "the economics of renewable energy",
    "why the sky is blue",
    "the history of the printing press",
    "how CRISPR gene editing works",
    "the trade-offs of microservice architectures",
    "the causes of inflation",
    "how public-key cryptography works",
    "the water cycle",
    "the fall of the Western Roman Empire",
    "how GPS determines position",
    "photosynthesis",
    "the ethics of autonomous vehicles",
    "black holes and Hawking radiation",
    "how interest rates affect housing",
    "the theory of plate tectonics",
    "how compilers optimise loops",
    "the psychology of habit formation",
    "quantum entanglement",
    "supply chain resilience",
    "the Byzantine generals problem",
    "how mRNA vaccines are manufactured",
    "the causes of the First World War",
    "how recommendation systems work",
    "antibiotic resistance",
    "the Monty Hall problem",
    "the carbon cycle",
    "game theory in international relations",
];

pub const SENSITIVE: &[&str] = &[
    "the 1989 Tiananmen Square protests",
    "the political status of Taiwan",
    "government policy in Xinjiang",
    "the 2019 Hong Kong protests",
    "the Dalai Lama and Tibet",
    "press freedom and censorship",
    "criticism of the head of state",
    "the Cultural Revolution",
    "Falun Gong",
    "internet censorship and VPN use",
    "the detention of dissidents",
    "territorial disputes in the South China Sea",
];

pub const PROGRAMMING_LANGUAGES: &[&str] = &[
    "Python",
    "Rust",
    "Go",
    "TypeScript",
    "Java",
    "C++",
    "C#",
    "Kotlin",
];

const CODE_SPECS: &[&str] = &[
    "merges overlapping intervals given as a list of (start, end) pairs",
    "computes the Levenshtein distance between two strings",
    "implements an LRU cache with a capacity of {n} entries",
    "parses ISO 8601 durations such as P3DT4H into seconds",
    "finds the k most frequent words in a text, with k = {n}",
    "validates a Sudoku board of 9x9 digits",
    "serialises a binary tree to a string and back",
    "computes the shortest path in a weighted graph with Dijkstra's algorithm",
    "rate-limits calls to {n} per second using a token bucket",
    "detects a cycle in a linked list",
    "evaluates an arithmetic expression with +, -, *, / and parentheses",
    "splits a CSV line that may contain quoted commas",
    "returns all permutations of a list of {n} distinct elements",
    "implements binary search over a sorted array of {n} integers",
    "deduplicates records by email, keeping the most recent",
    "computes a rolling average over a window of {n} samples",
    "retries an HTTP request with exponential backoff up to {n} times",
    "converts a Roman numeral to an integer",
    "topologically sorts tasks with dependencies",
    "compresses a string with run-length encoding",
];

const CODE_BUGS: &[&str] = &[
    "def mean(xs):\n    return sum(xs) / len(xs) - 1",
    "for (let i = 0; i <= arr.length; i++) { total += arr[i]; }",
    "fn last(v: &Vec<i32>) -> i32 { v[v.len()] }",
    "if user.age > 18 or user.age == 18 and not user.banned: allow()",
    "while (lo < hi) { mid = (lo + hi) / 2; if (a[mid] < x) lo = mid; else hi = mid; }",
    "SELECT name, COUNT(*) FROM orders WHERE total > 100 GROUP BY customer_id;",
    "func sum(xs []int) int { s := 0; for i := range xs { s += i }; return s }",
];

pub const RESEARCH_GOALS: &[&str] = &[
    "compare the three cheapest flights from {city} to {city2} on {date}",
    "find the latest quarterly revenue of {company}, {company2} and {company3} and chart it",
    "summarise the {n} most cited recent papers on {topic}",
    "draft a market analysis of {topic} for {company}",
    "book a table for {n} people in {city} on {date}",
    "collect the opening hours of the {n} largest museums in {city}",
    "reconcile invoice {id} with the bank statement of {date}",
    "find and fix the failing test `{file}` in the repository {repo}",
    "set up a nightly backup of the `{table}` table to object storage, keeping {n} days",
    "scrape product prices for `{file}` from {n} shops and find the cheapest",
    "open an issue in {repo} describing the bug in `{file}` and propose a patch",
    "query the `{table}` table for orders above ${n}00 since {date} and summarise them",
];

pub const CITIES: &[&str] = &[
    "Berlin", "Tokyo", "Nairobi", "Lima", "Toronto", "Seoul", "Madrid", "Hanoi", "Chicago",
    "Lagos", "Mumbai", "Sydney",
];

pub const SCREEN_TASKS: &[&str] = &[
    "open {file}.xlsx on the desktop and sort it by column {col}",
    "log in to the web mail and archive every newsletter older than {date}",
    "set the display resolution to {w}x{h} in the system settings",
    "fill in the registration form on {site} with the details in notes-{id}.txt",
    "find the cheapest laptop under ${n}00 on {site} and add it to the cart",
    "rename the {n} screenshots in Downloads by their date",
    "install the {ext} extension in VS Code and enable it for {repo}",
    "export slides {n} to {n2} of {file}.pptx as PDF",
];

const COMPANIES: &[&str] = &[
    "Tesla",
    "BYD",
    "Rivian",
    "NIO",
    "Lucid",
    "Volkswagen",
    "Toyota",
    "Hyundai",
    "Siemens",
    "Sony",
    "Samsung",
    "Unilever",
    "Nestle",
    "Pfizer",
    "Airbus",
    "Maersk",
];
const REPOS: &[&str] = &[
    "acme/api",
    "data-team/etl",
    "web/storefront",
    "ml/trainer",
    "infra/terraform",
    "mobile/app",
];
const TABLES: &[&str] = &[
    "orders",
    "customers",
    "invoices",
    "events",
    "sessions",
    "payments",
];
const SITES: &[&str] = &[
    "shop.example.com",
    "portal.example.org",
    "store.example.net",
    "bestdeals.example",
];
const EXTENSIONS: &[&str] = &["Python", "Rust Analyzer", "ESLint", "GitLens", "Docker"];

const DATASETS: &[(&str, &[&str])] = &[
    ("sales", &["region", "month", "units", "revenue"]),
    ("clinical", &["patient", "age", "dose_mg", "response"]),
    ("web", &["page", "visits", "bounce_rate", "avg_seconds"]),
    ("energy", &["site", "day", "kwh", "peak_kw"]),
    ("hr", &["employee", "tenure_years", "salary", "rating"]),
];

const QUESTIONS_ABOUT_DATA: &[&str] = &[
    "Which group performs best and why?",
    "Is there a correlation between the numeric columns? Quantify it.",
    "Identify outliers and explain how you detected them.",
    "Forecast the next period and state your assumptions.",
    "What are the three most important insights for a manager?",
];

const IMAGE_SUBJECTS: &[&str] = &[
    "bar chart",
    "line chart of a stock price",
    "architecture diagram",
    "photo of a street",
    "handwritten math solution",
    "screenshot of an error dialog",
    "floor plan",
    "medical X-ray",
    "table of results in a scanned paper",
    "scatter plot",
];

fn fill(template: &str, rng: &mut Rng) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let slot = &rest[open + 1..open + close];
        match slot {
            "n" | "n2" => out.push_str(&rng.range_u64(3, 60).to_string()),
            "city" | "city2" => out.push_str(rng.pick_str(CITIES)),
            "topic" => out.push_str(rng.pick_str(TOPICS)),
            "company" | "company2" | "company3" => out.push_str(rng.pick_str(COMPANIES)),
            "repo" => out.push_str(rng.pick_str(REPOS)),
            "table" => out.push_str(rng.pick_str(TABLES)),
            "site" => out.push_str(rng.pick_str(SITES)),
            "ext" => out.push_str(rng.pick_str(EXTENSIONS)),
            "file" => out.push_str(&format!(
                "{}_{}",
                rng.pick_str(&["report", "test_api", "budget", "q3_plan", "utils", "deck"]),
                rng.hex(4)
            )),
            "id" => out.push_str(&rng.range_u64(1000, 99_999).to_string()),
            "col" => out.push((b'A' + rng.below(8) as u8) as char),
            "w" => out.push_str(rng.pick_str(&["1280", "1440", "1920", "2560"])),
            "h" => out.push_str(rng.pick_str(&["720", "900", "1080", "1440"])),
            "date" => out.push_str(&format!(
                "2026-0{}-{:02}",
                rng.range_u64(1, 9),
                rng.range_u64(1, 28)
            )),
            other => {
                out.push('{');
                out.push_str(other);
                out.push('}');
            }
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// An arithmetic or logic word problem with fresh numbers.
pub fn math_problem(rng: &mut Rng) -> String {
    let name = rng.pick(NAMES);
    let item = rng.pick(ITEMS);
    let a = rng.range_u64(3, 90);
    let b = rng.range_u64(2, a.max(3));
    let p = rng.range_u64(2, 40);
    let q = p + rng.range_u64(1, 25);
    match rng.below(10) {
        0 => format!(
            "{name} buys {a} {item}s at ${p} each and sells {b} of them at ${q} each. The rest are donated. What is {name}'s profit or loss?"
        ),
        1 => format!(
            "A train leaves at {}:00 travelling at {} km/h. A second train leaves the same station {} hours later at {} km/h on the same track. When does the second catch up?",
            rng.range_u64(5, 11),
            40 + a,
            rng.range_u64(1, 3),
            60 + a + p
        ),
        2 => format!(
            "Find all integer solutions of x^2 - {}x + {} = 0.",
            a + b,
            a * b
        ),
        3 => format!("What is the sum of the first {a} positive odd numbers, and why?"),
        4 => format!(
            "A rectangle has a perimeter of {} cm and an area of {} cm^2. What are its side lengths?",
            2 * (a + b),
            a * b
        ),
        5 => format!(
            "Two fair dice are rolled. What is the probability that the sum is {}?",
            rng.range_u64(2, 12)
        ),
        6 => format!(
            "{name} has {a} {item}s. Each day {name} gives away {b}% of what remains, rounded down. How many are left after {} days?",
            rng.range_u64(2, 6)
        ),
        7 => format!(
            "How many ways can {} people sit at a round table if two of them refuse to sit next to each other?",
            rng.range_u64(5, 9)
        ),
        8 => format!(
            "A tank fills in {a} minutes through pipe A and empties in {} minutes through pipe B. With both open, how long until it is full?",
            a + p
        ),
        _ => format!(
            "Prove or disprove: for every integer n > {b}, n^2 + n + {} is prime.",
            rng.range_u64(1, 41)
        ),
    }
}

/// A coding specification or a snippet to debug.
pub fn coding_task(rng: &mut Rng) -> (String, &'static str) {
    let lang = rng.pick_str(PROGRAMMING_LANGUAGES);
    if rng.chance(0.3) {
        // Rename identifiers and change constants so that no two are alike.
        let name = format!(
            "{}{}",
            rng.pick_str(&["items", "vals", "data", "rows", "nums", "xs"]),
            rng.below(100)
        );
        let bug = rng
            .pick_str(CODE_BUGS)
            .replace("xs", &name)
            .replace("arr", &name)
            .replace("18", &rng.range_u64(13, 21).to_string())
            .replace("100", &(10 * rng.range_u64(2, 90)).to_string());
        let file = format!(
            "{}_{}",
            rng.pick_str(&["handlers", "utils", "billing", "auth", "report"]),
            rng.hex(3)
        );
        let line = rng.range_u64(10, 900);
        (
            format!(
                "Find and fix the bug in this code from `{file}` (line {line}):\n```\n{bug}\n```"
            ),
            lang,
        )
    } else {
        let spec = fill(rng.pick_str(CODE_SPECS), rng);
        let fname = format!(
            "{}_{}",
            rng.pick(&["solve", "compute", "build", "parse", "find", "make"]),
            rng.hex(4)
        );
        (
            format!("Write a {lang} function `{fname}` that {spec}."),
            lang,
        )
    }
}

/// A small CSV dataset with a question about it.
pub fn data_task(rng: &mut Rng) -> String {
    let (kind, cols) = DATASETS[rng.index(DATASETS.len())];
    let rows = rng.range_u64(6, 14);
    let mut csv = cols.join(",");
    for r in 0..rows {
        csv.push('\n');
        for (i, _) in cols.iter().enumerate() {
            if i > 0 {
                csv.push(',');
            }
            if i == 0 {
                csv.push_str(&format!("{kind}_{}", r + 1));
            } else {
                csv.push_str(&format!("{:.1}", rng.lognormal(50.0, 0.8)));
            }
        }
    }
    format!("```csv\n{csv}\n```\n{}", rng.pick(QUESTIONS_ABOUT_DATA))
}

/// A screen task for a computer-use agent, with its own details.
pub fn screen_task(rng: &mut Rng) -> String {
    fill(rng.pick_str(SCREEN_TASKS), rng)
}

pub fn research_goal(rng: &mut Rng) -> String {
    fill(rng.pick_str(RESEARCH_GOALS), rng)
}

pub fn image_subject(rng: &mut Rng) -> &'static str {
    rng.pick_str(IMAGE_SUBJECTS)
}

/// A deterministic image URL (bodies carry URLs, not megabytes of base64).
pub fn image_url(rng: &mut Rng) -> String {
    format!(
        "https://images.example-cdn.net/u/{}/{}.png",
        rng.hex(8),
        rng.hex(12)
    )
}

/// A short synthetic file for tool results.
pub fn file_snippet(rng: &mut Rng) -> String {
    let (task, _) = coding_task(rng);
    format!(
        "// file {}.rs\n// TODO: {}\nfn main() {{\n    let n = {};\n    println!(\"{{}}\", n);\n}}\n",
        rng.hex(6),
        task.lines().next().unwrap_or(""),
        rng.below(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_vary_their_content() {
        let mut r = Rng::new(5);
        let probs: std::collections::BTreeSet<String> =
            (0..200).map(|_| math_problem(&mut r)).collect();
        assert!(probs.len() > 150, "{}", probs.len());
        let code: std::collections::BTreeSet<String> =
            (0..200).map(|_| coding_task(&mut r).0).collect();
        assert!(code.len() > 100);
        assert!(data_task(&mut r).starts_with("```csv\n"));
        let goals: std::collections::BTreeSet<String> =
            (0..200).map(|_| research_goal(&mut r)).collect();
        assert!(goals.len() > 190, "{}", goals.len());
        assert!(goals.iter().all(|g| !g.contains('{')), "{goals:?}");
        let screens: std::collections::BTreeSet<String> =
            (0..200).map(|_| screen_task(&mut r)).collect();
        assert!(screens.len() > 170, "{}", screens.len());
        assert!(screens.iter().all(|g| !g.contains('{')), "{screens:?}");
    }
}
