/*!
The streaming linker: suspicious accounts that meet on dense keys become
one campaign, while events arrive.

Rules, in the order they apply:
1. **Counting.** Every account touching a key is counted once on it
   (a Bloom filter of (key, account) pairs plus a count-min of accounts per
   key, in fixed memory). No per-key member lists are kept for keys that
   no suspicious account touches, so honest traffic costs two sketch updates.
2. **Suspicion.** An account is suspicious once its risk (from the
   detection engine) reaches `link_risk`. Only suspicious accounts link.
   Honest accounts on shared infrastructure therefore never join a
   campaign, however many of them share a NAT.
3. **Density** (after FRAUDAR's idea that camouflage cannot hide a dense
   block). A key links its suspicious accounts only while they are at
   least `min_fraction` of all accounts on it. A university NAT, a
   carrier-grade NAT or a webmail domain carries thousands of honest
   accounts and never qualifies. A campaign's own payment methods, prompts
   and proxy ranges do, even when the campaign mixes in ordinary requests.
   Client stacks (a popular SDK in a popular cloud) never link on their own.
4. **Evidence, then union.** Groups of accounts (union-find; an account
   starts as its own group) that meet on a dense key collect evidence:
   the distinct keys they share, weighted by kind (`Kind::weight`). They
   join once the evidence reaches [`JOIN_EVIDENCE`] and is corroborated:
   a shared payment method is enough alone; otherwise two kinds and at
   least two of the operator's own keys (IPs, e-mail domains), and for
   large groups a twentieth of the smaller group's. Prompt libraries and
   residential proxy services are shared by unrelated actors, so content
   or a single exit never merges two campaigns. A key remembers only the
   groups on it (at most 16), so there is no pairwise comparison of
   accounts.
5. **Confirmation.** A group becomes a campaign once it has `min_accounts`
   accounts, `min_flagged` of them flagged by the engine on their own. Its
   `detected_at` is the event at which that first held. Members join the
   campaign's verdict from `max(joined, detected_at)`. This is how accounts
   too small to stop alone are stopped with their campaign.
6. **Dormant accounts.** Accounts in the account records that never sent a
   request join a confirmed campaign whose payment method they share, when
   that payment method is dense with the campaign's accounts.

Cost per event: one hash-map lookup and two sketch updates per key (about
six keys), plus the union-find for suspicious accounts.
*/

use std::collections::{HashMap, HashSet};

use distillguard_sketches::fxhash::FastMap;

use distillguard_core::{AccountInfo, Invalid, Timestamp};
use distillguard_sketches::countmin::CountMin;
use distillguard_sketches::mix64;

use crate::keys::{Key, Kind, Label, account_keys};

/// Linking parameters (the `[link]` table of the analyze configuration).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Link accounts into campaigns at all (off: detection alone).
    pub enabled: bool,
    /// Risk from which an account may link on every kind of key.
    pub link_risk: f64,
    /// Risk from which an account is a *candidate*: it links on the
    /// identifiers of its own account record alone (payment method, mail
    /// domain, batch of sign-ups), never on traffic keys (exits, prompts,
    /// windows), where honest crowds meet. A network of accounts each too
    /// weak to stand out (tens of requests in human hours) still shares
    /// cards and a sign-up batch with nobody but itself; the density rule
    /// then counts candidates, and the group's pooled evidence decides.
    /// Also the reference of that evidence: a member adds
    /// `logit(risk) − logit(candidate_risk)`. Above `link_risk`, it is
    /// `link_risk`.
    pub candidate_risk: f64,
    /// Share of a key's accounts that must be suspicious for it to link.
    pub min_fraction: f64,
    /// Accounts a linked group needs to be a campaign.
    pub min_accounts: u32,
    /// Of those, accounts flagged by the engine on their own (one way to
    /// confirm a group).
    pub min_flagged: u32,
    /// Pooled evidence that confirms a group whose accounts are each too
    /// weak to be stopped alone (the other ways), on either of two scales,
    /// each member's part capped at [`MEMBER_EVIDENCE_CAP`]:
    /// - strong: the sum of `logit(risk) − logit(link_risk)`, any group of
    ///   `min_accounts` (a few accounts each close to a threshold);
    /// - network: the sum of `logit(risk) − logit(candidate_risk)`, for a
    ///   group of `min_network` accounts or more (many weak accounts).
    pub confirm_evidence: f64,
    /// Accounts a group needs to be confirmed on the network scale.
    /// Honest groups linked in the randomised worlds had at most 8
    /// accounts.
    pub min_network: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            link_risk: 0.5,
            candidate_risk: 0.3,
            min_fraction: 0.5,
            min_accounts: 3,
            min_flagged: 2,
            confirm_evidence: 20.0,
            min_network: 12,
        }
    }
}

/// The most one account adds to its group's pooled evidence: a network is
/// confirmed by many members' evidence, not by one account's certainty.
pub const MEMBER_EVIDENCE_CAP: f64 = 3.0;

fn logit(r: f64) -> f64 {
    let r = r.clamp(1e-9, 1.0 - 1e-9);
    (r / (1.0 - r)).ln()
}

impl Config {
    /// The candidate level in force (never above `link_risk`).
    pub fn candidate(&self) -> f64 {
        self.candidate_risk.min(self.link_risk)
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if !(0.0..=1.0).contains(&self.link_risk) || !(0.0..=1.0).contains(&self.min_fraction) {
            return Err("link_risk and min_fraction must lie in [0, 1]".into());
        }
        if !(0.0..=1.0).contains(&self.candidate_risk) {
            return Err("candidate_risk must lie in [0, 1]".into());
        }
        if self.min_accounts < 2 || self.min_flagged == 0 || self.min_flagged > self.min_accounts {
            return Err("need 2 ≤ min_accounts and 1 ≤ min_flagged ≤ min_accounts".into());
        }
        if self.confirm_evidence.is_nan() || self.confirm_evidence <= 0.0 {
            return Err("confirm_evidence must be > 0".into());
        }
        if self.min_network < self.min_accounts {
            return Err("min_network must be at least min_accounts".into());
        }
        Ok(())
    }
}

/// A key that suspicious accounts touched.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct KeyState {
    pub kind: Kind,
    pub label: String,
    /// Suspicious accounts counted on it.
    pub suspicious: u32,
    /// Its first suspicious account (others join it).
    pub rep: u32,
    /// Whether it has linked any account.
    pub linked: bool,
    /// Groups (union-find roots, possibly stale) with suspicious accounts on it.
    pub groups: Vec<u32>,
}

/// Groups remembered per key (a key shared by more is no evidence anyway).
const MAX_GROUPS_PER_KEY: usize = 16;

/// Evidence needed to join two groups: the sum of the weights of the
/// distinct dense keys they share.
pub const JOIN_EVIDENCE: u8 = 3;

/// Distinct exact system prompts two groups must share to join on content
/// alone. An application has one system prompt, or a few; one public
/// library entry, or two, is shared by unrelated actors; a set of four or
/// more, each dense with suspicious accounts, is one operator's rotation.
/// Templates do not count: a class sharing a worksheet shares many.
pub const CONTENT_KEYS: u8 = 4;

/// Evidence between two groups.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Pair {
    score: u8,
    /// Kinds seen (bit per kind): without a payment method, two kinds.
    kinds: u16,
    /// Distinct identity keys (IPs, e-mail domains) among them.
    identity: u16,
    /// Distinct synchronised windows shared.
    windows: u16,
    /// Distinct exact system prompts shared.
    content: u8,
    keys: Vec<u64>,
}

/// Synchronised windows two groups must share to join on synchrony alone
/// (the same template in the same ten minutes, three times over, is no
/// coincidence: after SynchroTrap).
pub const SYNC_WINDOWS: u16 = 3;

/// Share of the smaller group's synchronised windows two groups must share
/// to join on synchrony.
pub const SYNC_SHARE: f64 = 0.3;

/// Share of ten-minute windows (since it first appeared among suspicious
/// accounts) above which a template is always on: two groups meeting on
/// it in a window is then what independent round-the-clock scripts do,
/// not synchrony. SynchroTrap's point is acting together when the action
/// is otherwise rare in time.
pub const SYNC_QUIET: f64 = 0.5;

/// Templates whose activity is remembered for [`SYNC_QUIET`] (beyond,
/// the memory starts over).
const MAX_SYNC_TEMPLATES: usize = 1 << 20;

/// Per-account linking state.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Member {
    pub statics: Vec<Key>,
    pub suspicious: bool,
    /// At or above `candidate_risk`: links on its record's identifiers.
    pub candidate: bool,
    pub flagged: bool,
    pub max_risk: f64,
    /// What the account adds to its group's pooled evidence now (strong,
    /// network).
    pub evidence: [f64; 2],
    pub joined_at: Option<i64>,
    pub requests: u32,
    pub output_tokens: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub caps: [u32; 9],
    /// Dormant: from the account records, never sent a request.
    pub dormant: bool,
    /// Keys it was counted on as a suspicious account (at most
    /// [`MEMBER_KEYS`]; not synchrony windows): which of its campaign's
    /// indicators are its own, for the campaign's graph.
    /// Boxed: one pointer for the (many) members never counted on a key.
    #[expect(
        clippy::box_collection,
        reason = "8 bytes instead of a Vec's 24 on every member; most stay empty"
    )]
    pub shared: Option<Box<Vec<u64>>>,
}

/// Keys remembered per member for the campaign graph.
pub const MEMBER_KEYS: usize = 32;

/// What the linker needs of one request besides its keys.
#[derive(Debug, Clone, Copy)]
pub struct Activity {
    pub ts: Timestamp,
    pub output_tokens: u32,
    /// Capability index (`Capability as usize` in the detection crate).
    pub capability: u8,
    /// The account's risk after this request (account or stream, the higher).
    pub risk: f64,
    /// Whether the engine has flagged the account (throttle or above).
    pub flagged: bool,
}

/// The linker (saved and restored whole with `serde`: a detector
/// worker's snapshot).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Linker {
    pub cfg: Config,
    seen: distillguard_sketches::bloom::Bloom,
    count: CountMin,
    pub(crate) keys: FastMap<u64, KeyState>,
    /// "Has this suspicious account been counted on this key?" (a Bloom
    /// filter, like `seen`: a rare false hit undercounts by one).
    counted_suspicious: distillguard_sketches::bloom::Bloom,
    pairs: FastMap<(u32, u32), Pair>,
    /// Per template (or system prompt) of synchrony keys: the first and
    /// last window it was used in by a suspicious account, and in how many
    /// windows.
    template_windows: FastMap<u64, (i64, i64, u32)>,
    parent: Vec<u32>,
    size: Vec<u32>,
    flagged: Vec<u32>,
    /// Pooled evidence per group root, strong and network (see
    /// [`Config::confirm_evidence`]).
    evidence: Vec<[f64; 2]>,
    /// Identity keys (IPs, e-mail domains) per group root.
    identity: Vec<u32>,
    /// Synchronised windows (template or prompt × ten minutes) each group
    /// acted in, counted per account.
    windows: Vec<u32>,
    /// Whether a member of the group has an identity of its operator's
    /// own: a payment method or a batch of sign-ups.
    anchored: Vec<bool>,
    pub(crate) detected_at: Vec<Option<i64>>,
    pub(crate) members: Vec<Member>,
    /// Client stacks seen per group root, for the report (never links).
    pub(crate) clients: HashMap<u64, (String, HashSet<u32>)>,
    generation: u64,
    pub events: u64,
}

impl Linker {
    pub fn new(cfg: Config) -> Linker {
        Linker {
            cfg,
            seen: distillguard_sketches::bloom::Bloom::new(27),
            count: CountMin::new(20),
            keys: FastMap::default(),
            counted_suspicious: distillguard_sketches::bloom::Bloom::new(24),
            pairs: FastMap::default(),
            template_windows: FastMap::default(),
            parent: Vec::new(),
            size: Vec::new(),
            flagged: Vec::new(),
            evidence: Vec::new(),
            identity: Vec::new(),
            windows: Vec::new(),
            anchored: Vec::new(),
            detected_at: Vec::new(),
            members: Vec::new(),
            clients: HashMap::new(),
            generation: 0,
            events: 0,
        }
    }

    fn ensure(&mut self, idx: u32) {
        while self.members.len() <= idx as usize {
            let i = self.members.len() as u32;
            self.parent.push(i);
            self.size.push(1);
            self.flagged.push(0);
            self.evidence.push([0.0; 2]);
            self.identity.push(0);
            self.windows.push(0);
            self.anchored.push(false);
            self.detected_at.push(None);
            self.members.push(Member::default());
        }
    }

    /// Whether the account at `idx` left no trace beyond its own counts:
    /// never a candidate for linking, alone in its group, no record keys.
    pub fn forgettable(&self, idx: u32) -> bool {
        let i = idx as usize;
        self.members.get(i).is_some_and(|m| {
            !m.candidate && !m.suspicious && !m.flagged && m.statics.is_empty() && !m.dormant
        }) && self.parent.get(i) == Some(&idx)
            && self.size.get(i) == Some(&1)
            && self.detected_at.get(i).is_some_and(|d| d.is_none())
    }

    /// Resets a [`Linker::forgettable`] account's entry so that its index
    /// can be given to another account. The sketches keep its counts (a new
    /// account on the index may be undercounted by one on a shared key).
    pub fn forget(&mut self, idx: u32) -> bool {
        if !self.forgettable(idx) {
            return false;
        }
        let i = idx as usize;
        self.members[i] = Member::default();
        self.flagged[i] = 0;
        self.evidence[i] = [0.0; 2];
        self.identity[i] = 0;
        self.windows[i] = 0;
        self.anchored[i] = false;
        true
    }

    fn count_on(&mut self, key: u64, idx: u32) {
        if !self.seen.insert(mix64(
            key ^ u64::from(idx).wrapping_mul(0xA24B_AED4_963E_E407),
        )) {
            self.count.add(key);
        }
    }

    /// Counts an account's record keys before any event (so that dormant
    /// accounts count on their payment methods too). `idx` must be the
    /// index the account will have.
    pub fn register(&mut self, idx: u32, info: &AccountInfo) {
        self.ensure(idx);
        let statics = account_keys(info);
        for k in &statics {
            self.count_on(k.key, idx);
        }
        self.members[idx as usize].statics = statics;
    }

    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    fn union(&mut self, a: u32, b: u32, ts: i64) {
        let (ra, rb) = (self.find(a), self.find(b));
        for x in [a, b] {
            let m = &mut self.members[x as usize];
            if m.joined_at.is_none() {
                m.joined_at = Some(ts);
            }
        }
        if ra == rb {
            return;
        }
        // Larger group wins; ties go to the earlier account (deterministic).
        let (root, child) = match self.size[ra as usize].cmp(&self.size[rb as usize]) {
            std::cmp::Ordering::Greater => (ra, rb),
            std::cmp::Ordering::Less => (rb, ra),
            std::cmp::Ordering::Equal => (ra.min(rb), ra.max(rb)),
        };
        self.parent[child as usize] = root;
        self.generation += 1;
        self.size[root as usize] += self.size[child as usize];
        self.flagged[root as usize] += self.flagged[child as usize];
        let child_evidence = self.evidence[child as usize];
        for (g, c) in self.evidence[root as usize].iter_mut().zip(child_evidence) {
            *g += c;
        }
        self.identity[root as usize] += self.identity[child as usize];
        self.windows[root as usize] += self.windows[child as usize];
        self.anchored[root as usize] |= self.anchored[child as usize];
        self.detected_at[root as usize] = match (
            self.detected_at[root as usize],
            self.detected_at[child as usize],
        ) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        self.confirm(root, ts);
    }

    fn confirm(&mut self, root: u32, ts: i64) {
        let r = root as usize;
        if self.detected_at[r].is_none()
            && self.size[r] >= self.cfg.min_accounts
            && (self.flagged[r] >= self.cfg.min_flagged
                || self.evidence[r][0] >= self.cfg.confirm_evidence
                || (self.size[r] >= self.cfg.min_network
                    && self.evidence[r][1] >= self.cfg.confirm_evidence))
        {
            self.detected_at[r] = Some(ts);
            self.generation += 1;
        }
    }

    /// Updates an account's part of its group's pooled evidence.
    fn update_evidence(&mut self, idx: u32, ts: i64) {
        let m = &self.members[idx as usize];
        if !m.candidate {
            return;
        }
        let part =
            |reference: f64| (logit(m.max_risk) - logit(reference)).clamp(0.0, MEMBER_EVIDENCE_CAP);
        let e = [part(self.cfg.link_risk), part(self.cfg.candidate())];
        let delta = [e[0] - m.evidence[0], e[1] - m.evidence[1]];
        if delta[0].abs() < 1e-9 && delta[1].abs() < 1e-9 {
            return;
        }
        self.members[idx as usize].evidence = e;
        let r = self.find(idx) as usize;
        for (g, d) in self.evidence[r].iter_mut().zip(delta) {
            *g += d;
        }
        self.confirm(r as u32, ts);
    }

    /// Every group of two or more accounts: its members (linker indices),
    /// pooled evidence on the network scale and whether it is a confirmed
    /// campaign (for judging how far honest groups get).
    pub fn groups(&mut self) -> Vec<(Vec<u32>, f64, bool)> {
        let n = self.members.len() as u32;
        let mut by_root: HashMap<u32, Vec<u32>> = HashMap::new();
        for i in 0..n {
            let r = self.find(i);
            if self.size[r as usize] >= 2 {
                by_root.entry(r).or_default().push(i);
            }
        }
        let mut out: Vec<(Vec<u32>, f64, bool)> = by_root
            .into_iter()
            .map(|(r, m)| {
                let r = r as usize;
                (m, self.evidence[r][1], self.detected_at[r].is_some())
            })
            .collect();
        out.sort_by_key(|g| g.0[0]);
        out
    }

    /// Folds one request of account `idx` (the engine's index) with the
    /// event's keys. `info`: the account record, used at its first request
    /// if [`Linker::register`] did not see it.
    pub fn observe(&mut self, idx: u32, info: Option<&AccountInfo>, keys: &[Key], a: Activity) {
        self.events += 1;
        self.ensure(idx);
        let ts = a.ts.0;
        {
            let m = &mut self.members[idx as usize];
            if m.requests == 0 {
                m.first_seen = ts;
            }
            m.requests += 1;
            m.last_seen = ts;
            m.output_tokens += u64::from(a.output_tokens);
            if let Some(c) = m.caps.get_mut(a.capability as usize) {
                *c += 1;
            }
            m.max_risk = m.max_risk.max(a.risk);
        }
        if self.members[idx as usize].requests == 1
            && self.members[idx as usize].statics.is_empty()
            && let Some(info) = info
        {
            let statics = account_keys(info);
            for k in &statics {
                self.count_on(k.key, idx);
            }
            self.members[idx as usize].statics = statics;
        }
        for k in keys.iter().filter(|k| k.kind != Kind::Client) {
            self.count_on(k.key, idx);
        }
        if a.flagged && !self.members[idx as usize].flagged {
            self.members[idx as usize].flagged = true;
            let r = self.find(idx);
            self.flagged[r as usize] += 1;
            self.confirm(r, ts);
        }
        if a.risk >= self.cfg.link_risk {
            self.members[idx as usize].suspicious = true;
        }
        if a.risk >= self.cfg.candidate() {
            self.members[idx as usize].candidate = true;
        }
        if !self.members[idx as usize].candidate {
            return;
        }
        self.update_evidence(idx, ts);
        let statics = std::mem::take(&mut self.members[idx as usize].statics);
        if statics
            .iter()
            .chain(keys.iter())
            .any(|k| matches!(k.kind, Kind::Payment | Kind::SignupBatch))
        {
            let r = self.find(idx);
            self.anchored[r as usize] = true;
        }
        // A candidate links on its record's identifiers only.
        let traffic: &[Key] = if self.members[idx as usize].suspicious {
            keys
        } else {
            &[]
        };
        for k in statics.iter().chain(traffic.iter()) {
            if !k.kind.links() {
                if k.kind == Kind::Client {
                    let r = self.find(idx);
                    let e = self
                        .clients
                        .entry(k.key)
                        .or_insert_with(|| (k.label.render(), HashSet::new()));
                    e.1.insert(r);
                    e.1.insert(idx);
                }
                continue;
            }
            self.link_on(k, idx, ts);
        }
        self.members[idx as usize].statics = statics;
    }

    fn link_on(&mut self, k: &Key, idx: u32, ts: i64) {
        // A synchrony key counts only on a template that is quiet in
        // most windows.
        let in_sync = match (k.kind, &k.label) {
            (Kind::Synchrony, Label::Sync(t, w)) => Some(self.quiet_template(*t, *w)),
            _ => None,
        };
        let first = !self.counted_suspicious.insert(mix64(
            k.key ^ u64::from(idx).wrapping_mul(0x9FB2_1C65_1E98_DF25),
        ));
        let st = self.keys.entry(k.key).or_insert_with(|| KeyState {
            kind: k.kind,
            label: k.label.render(),
            suspicious: 0,
            rep: idx,
            linked: false,
            groups: Vec::new(),
        });
        if first {
            st.suspicious += 1;
            let m = &mut self.members[idx as usize];
            if k.kind != Kind::Synchrony {
                let shared = m.shared.get_or_insert_with(Box::default);
                if shared.len() < MEMBER_KEYS {
                    shared.push(k.key);
                } else if matches!(
                    k.kind,
                    Kind::Payment | Kind::EmailDomain | Kind::SignupBatch | Kind::SystemPrompt
                ) {
                    // An operator's own identifiers matter more to the
                    // graph than one more rotating exit.
                    if let Some(last) = shared.last_mut() {
                        *last = k.key;
                    }
                }
            }
        }
        let sync_first = first && in_sync == Some(true);
        let total = self.count.estimate(k.key).max(st.suspicious);
        // A batch of sign-ups is five or more: two accounts registering on
        // one domain in the same three hours is a coincidence on webmail.
        let least = if k.kind == Kind::SignupBatch { 5 } else { 2 };
        let dense = st.suspicious >= least
            && f64::from(st.suspicious) / f64::from(total) >= self.cfg.min_fraction;
        // The groups on this key, as current roots (deduplicated).
        let mut groups = std::mem::take(&mut st.groups);
        for g in groups.iter_mut() {
            *g = self.find(*g);
        }
        groups.sort_unstable();
        groups.dedup();
        let ra = self.find(idx);
        if sync_first {
            self.windows[ra as usize] += 1;
        }
        if !groups.contains(&ra) && groups.len() < MAX_GROUPS_PER_KEY {
            groups.push(ra);
            if matches!(k.kind, Kind::Ip | Kind::EmailDomain) {
                self.identity[ra as usize] += 1;
            }
        }
        if dense && k.kind.weight() > 0 && in_sync != Some(false) {
            for &rb in groups.iter().filter(|&&g| g != ra) {
                self.evidence(ra, rb, k, ts);
            }
        }
        if let Some(st) = self.keys.get_mut(&k.key) {
            st.groups = groups;
        }
    }

    /// Records that template `t` was used in window `w`; whether it has
    /// been used in at most [`SYNC_QUIET`] of the windows since it first
    /// appeared (a template seen in one window only is not yet known to
    /// be quiet).
    fn quiet_template(&mut self, t: u64, w: i64) -> bool {
        if self.template_windows.len() >= MAX_SYNC_TEMPLATES
            && !self.template_windows.contains_key(&t)
        {
            self.template_windows.clear();
        }
        let e = self.template_windows.entry(t).or_insert((w, w - 1, 0));
        // Records come in time order (within the reorder window): a window
        // older than the last is already counted or too late to matter.
        if w > e.1 {
            e.1 = w;
            e.2 += 1;
        }
        let span = (e.1 - e.0 + 1).max(1) as f64;
        span >= 2.0 && f64::from(e.2) / span <= SYNC_QUIET
    }

    /// Whether the mail domain of a batch of sign-ups is dense with
    /// suspicious accounts (an operator's own domain). On a webmail domain,
    /// two rings registering in the same three hours are two rings: the
    /// batch is evidence there, not enough alone.
    fn own_domain(&self, batch: &Key) -> bool {
        let label = batch.label.render();
        let Some(domain) = label.split(" @ ").next() else {
            return false;
        };
        let key = Kind::EmailDomain.key(domain.as_bytes());
        self.keys.get(&key).is_some_and(|st| {
            let total = self.count.estimate(key).max(st.suspicious);
            f64::from(st.suspicious) / f64::from(total) >= self.cfg.min_fraction
        })
    }

    /// Adds a dense key shared by groups `a` and `b` to their evidence;
    /// joins them once the evidence reaches [`JOIN_EVIDENCE`].
    fn evidence(&mut self, a: u32, b: u32, k: &Key, ts: i64) {
        let pair = (a.min(b), a.max(b));
        let own_batch = k.kind == Kind::SignupBatch && self.own_domain(k);
        let e = self.pairs.entry(pair).or_default();
        if e.keys.contains(&k.key) {
            // Counted already. A batch of sign-ups is looked at again: its
            // mail domain may have become dense with suspicious accounts
            // (the operator's own) since the batch was first shared.
            if !own_batch {
                return;
            }
        } else {
            e.keys.push(k.key);
            e.score = e.score.saturating_add(k.kind.weight());
            e.kinds |= 1 << (k.kind as u16);
            // Without a payment method: two kinds, and at least two keys of
            // the operator's own (IPs, e-mail domains). Content alone
            // (templates, system prompts) can be copied from public prompt
            // libraries by anyone, and one residential exit can be shared
            // by chance.
            if matches!(k.kind, Kind::Ip | Kind::EmailDomain) {
                e.identity = e.identity.saturating_add(1);
            }
            if k.kind == Kind::Synchrony {
                e.windows = e.windows.saturating_add(1);
            }
            if k.kind == Kind::SystemPrompt {
                e.content = e.content.saturating_add(1);
            }
        }
        // Large groups must share a proportionate part of their exits:
        // two campaigns renting the same residential proxy service share a
        // few exits by chance, never a twentieth of them.
        let (ia, ib) = (self.identity[a as usize], self.identity[b as usize]);
        let need = 2u32.max(ia.min(ib).div_ceil(20));
        // Strong: a shared card or batch of sign-ups; or two kinds with
        // identity keys of the operator's own; or synchrony in three
        // windows (SynchroTrap: acting together is evidence enough to merge
        // groups that share no card).
        // Synchrony counts when the groups act together in a good part of
        // the smaller group's windows, not merely sometimes (two unrelated
        // scripts that drew the same template share a few windows by
        // running at the same time).
        let (wa, wb) = (self.windows[a as usize], self.windows[b as usize]);
        let in_step = e.windows >= SYNC_WINDOWS
            && f64::from(e.windows) >= SYNC_SHARE * f64::from(wa.min(wb).max(1));
        let anchoring = k.kind == Kind::Payment
            || own_batch
            || (e.kinds.count_ones() >= 2 && u32::from(e.identity) >= need);
        // A library of prompts shared with a group that has an identity of
        // its operator's own (a card) is a library another actor may have
        // drawn from too; shared only by accounts with no such identity
        // (no records, rotating exits), it is the one thing that ties them.
        let by_content =
            e.content >= CONTENT_KEYS && !self.anchored[a as usize] && !self.anchored[b as usize];
        let strong = anchoring || in_step || by_content;
        if e.score >= JOIN_EVIDENCE && strong {
            let keys = std::mem::take(&mut e.keys);
            for k in keys {
                if let Some(st) = self.keys.get_mut(&k) {
                    st.linked = true;
                }
            }
            self.pairs.remove(&pair);
            self.union(a, b, ts);
        }
    }

    /// Dormant accounts (records without requests) join a confirmed
    /// campaign through a dense payment method. `idx` values must not be
    /// used by any active account.
    pub fn link_dormant(&mut self, idx: u32) {
        self.ensure(idx);
        self.members[idx as usize].dormant = true;
        let statics = self.members[idx as usize].statics.clone();
        for k in statics.iter().filter(|k| k.kind == Kind::Payment) {
            let Some(st) = self.keys.get(&k.key) else {
                continue;
            };
            let total = self.count.estimate(k.key).max(st.suspicious + 1);
            if st.suspicious < 2
                || f64::from(st.suspicious) / f64::from(total) < self.cfg.min_fraction
            {
                continue;
            }
            let rep = st.rep;
            let root = self.find(rep);
            if let Some(at) = self.detected_at[root as usize] {
                if let Some(s) = self.keys.get_mut(&k.key) {
                    s.linked = true;
                }
                self.union(idx, rep, at);
                self.members[idx as usize].joined_at = Some(at);
                return;
            }
        }
    }

    /// When account `idx` is stopped with its campaign, if it is in one.
    pub fn campaign_flag_at(&mut self, idx: u32) -> Option<(u32, i64)> {
        if idx as usize >= self.members.len() {
            return None;
        }
        let r = self.find(idx);
        let detected = self.detected_at[r as usize]?;
        let joined = self.members[idx as usize].joined_at?;
        Some((r, joined.max(detected)))
    }

    /// Roots of confirmed campaigns.
    pub fn campaign_roots(&mut self) -> Vec<u32> {
        let n = self.members.len() as u32;
        let mut roots: Vec<u32> = (0..n)
            .filter(|&i| self.parent[i as usize] == i && self.detected_at[i as usize].is_some())
            .collect();
        roots.sort_unstable();
        roots
    }

    /// Changes with every merge and every confirmation: a live user (the
    /// gateway) re-reads campaign membership only when it moved.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Accounts known to the linker (indices `0..len`).
    pub fn len(&self) -> u32 {
        self.members.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Requests seen from account `idx` (0 for dormant or unknown accounts).
    pub fn requests_of(&self, idx: u32) -> u32 {
        self.members.get(idx as usize).map_or(0, |m| m.requests)
    }

    pub(crate) fn size_of(&self, root: u32) -> u32 {
        self.size[root as usize]
    }

    pub(crate) fn flagged_of(&self, root: u32) -> u32 {
        self.flagged[root as usize]
    }

    /// Distinct accounts counted on a key (count-min estimate).
    pub(crate) fn accounts_on(&self, key: u64) -> u32 {
        self.count.estimate(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Kind;

    fn key(kind: Kind, label: &str) -> Key {
        Key {
            kind,
            key: kind.key(label.as_bytes()),
            label: crate::keys::Label::Text(label.into()),
        }
    }

    fn act(ts: i64, risk: f64, flagged: bool) -> Activity {
        Activity {
            ts: Timestamp(ts),
            output_tokens: 100,
            capability: 3,
            risk,
            flagged,
        }
    }

    #[test]
    fn synchrony_joins_bursts_not_round_the_clock_scripts() {
        // Two rings (a card each) on one template. `every`: they fire in
        // every `every`-th ten-minute window, at the same times.
        let run = |every: i64| {
            let mut l = Linker::new(Config::default());
            for burst in 0..8i64 {
                let w = burst * every;
                let t = 0xC0FFEE_u64;
                let sync = Key {
                    kind: Kind::Synchrony,
                    key: Kind::Synchrony.key_of_hash(mix64(t ^ w as u64)),
                    label: crate::keys::Label::Sync(t, w),
                };
                for i in 0..6u32 {
                    let card = key(Kind::Payment, if i < 3 { "pm_a" } else { "pm_b" });
                    let ts = w * crate::keys::SYNC_WINDOW_MS + i64::from(i);
                    l.observe(i, None, &[card, sync.clone()], act(ts, 0.9, true));
                }
            }
            let mut sizes: Vec<u32> = l.campaign_roots().iter().map(|&r| l.size_of(r)).collect();
            sizes.sort_unstable();
            sizes
        };
        // Bursts an hour apart: acting together when the template is
        // otherwise quiet is synchrony.
        assert_eq!(run(6), vec![6]);
        // The template in use in every window: two round-the-clock scripts
        // drawing from one library, not one network.
        assert_eq!(run(1), vec![3, 3]);
    }

    #[test]
    fn suspicious_accounts_on_a_dense_key_form_a_campaign() {
        let mut l = Linker::new(Config::default());
        let pm = key(Kind::Payment, "pm_ring");
        for i in 0..5u32 {
            l.observe(
                i,
                None,
                std::slice::from_ref(&pm),
                act(i as i64 * 10, 0.9, i < 2),
            );
        }
        let roots = l.campaign_roots();
        assert_eq!(roots.len(), 1);
        assert_eq!(l.size_of(roots[0]), 5);
        // Confirmed at the third account (3 accounts, 2 flagged).
        assert_eq!(l.detected_at[roots[0] as usize], Some(20));
        assert_eq!(l.campaign_flag_at(4).map(|x| x.1), Some(40));
    }

    #[test]
    fn honest_crowds_and_client_stacks_do_not_link() {
        let mut l = Linker::new(Config::default());
        let nat = key(Kind::IpPrefix, "100.64.0.0/24");
        let sdk = key(Kind::Client, "AS16509 · openai-python/1.0 · ja3");
        // 200 honest accounts behind one carrier-grade NAT, 3 suspicious.
        for i in 0..200u32 {
            let risk = if i % 70 == 0 { 0.95 } else { 0.01 };
            l.observe(
                i,
                None,
                &[nat.clone(), sdk.clone()],
                act(i as i64, risk, risk > 0.9),
            );
        }
        assert!(l.campaign_roots().is_empty());
        // Suspicious accounts sharing only a client stack stay apart.
        let mut l = Linker::new(Config::default());
        for i in 0..10u32 {
            l.observe(
                i,
                None,
                std::slice::from_ref(&sdk),
                act(i as i64, 0.99, true),
            );
        }
        assert!(l.campaign_roots().is_empty());
    }

    #[test]
    fn camouflage_does_not_dissolve_a_campaign() {
        // Campaign accounts also send ordinary requests and share a
        // webmail domain with honest users: the payment ring still links.
        let mut l = Linker::new(Config::default());
        let gmail = key(Kind::EmailDomain, "gmail.com");
        for i in 100..400u32 {
            l.observe(
                i,
                None,
                std::slice::from_ref(&gmail),
                act(i as i64, 0.02, false),
            );
        }
        let pm = key(Kind::Payment, "pm_x");
        for i in 0..6u32 {
            l.observe(
                i,
                None,
                &[gmail.clone(), pm.clone()],
                act(1000 + i as i64, 0.8, i % 2 == 0),
            );
        }
        let roots = l.campaign_roots();
        assert_eq!(roots.len(), 1);
        assert_eq!(l.size_of(roots[0]), 6);
        assert!(!l.keys[&gmail.key].linked);
    }

    #[test]
    fn a_network_of_weak_accounts_is_confirmed_by_pooled_evidence() {
        let cfg = Config::default();
        let info = |pm: &str, domain: &str, created: i64| AccountInfo {
            payment_fingerprint: Some(pm.into()),
            email_domain: Some(domain.into()),
            created_at: Some(Timestamp(created)),
            ..Default::default()
        };
        let run = |risk: f64| {
            let mut l = Linker::new(cfg);
            // 60 accounts on 4 cards and their own domain, registered in
            // one hour; each a few requests, each below `link_risk`.
            for i in 0..60u32 {
                l.register(
                    i,
                    &info(
                        &format!("pm_{}", i % 4),
                        "mailbox-x.net",
                        i64::from(i) * 60_000,
                    ),
                );
            }
            // An honest family of four on one card, on webmail.
            for i in 60..64u32 {
                l.register(i, &info("pm_family", "gmail.com", i64::from(i) * 3_600_000));
            }
            // Ten accounts without records behind one exit, on one template.
            let traffic = [key(Kind::Ip, "203.0.113.9"), key(Kind::Template, "t1")];
            for round in 0..3i64 {
                for i in 0..74u32 {
                    let keys: &[Key] = if i >= 64 { &traffic } else { &[] };
                    l.observe(
                        i,
                        None,
                        keys,
                        act(10_000_000 + round * 1000 + i64::from(i), risk, false),
                    );
                }
            }
            l
        };
        let mut l = run(0.4);
        let roots = l.campaign_roots();
        assert_eq!(roots.len(), 1, "the network, and nothing else");
        assert_eq!(l.size_of(roots[0]), 60);
        // Same shape, risk at the candidate level: no evidence, no campaign.
        assert!(run(0.3).campaign_roots().is_empty());
        // Below it, nobody links at all.
        let mut low = run(0.2);
        assert!(low.groups().is_empty());
        // The family groups (one card, dense) but is far from confirmed;
        // candidates never link on exits or templates.
        let groups = l.groups();
        assert!(
            groups
                .iter()
                .any(|(m, e, c)| m.len() == 4 && !c && *e < 5.0)
        );
        assert!(groups.iter().all(|(m, _, _)| m.iter().all(|&i| i < 64)));
    }

    #[test]
    fn pooled_evidence_confirms_a_network_of_many_or_a_few_strong_accounts() {
        // Members at 0.85, none flagged on its own: eight pool 20.6 on the
        // network scale (13.9 on the strong one) but are not a network;
        // twelve are. Seven at 0.97 pool 21 on the strong scale: a few
        // accounts each just under a threshold.
        let run = |n: u32, risk: f64| {
            let mut l = Linker::new(Config::default());
            let pm = key(Kind::Payment, "pm_shared");
            for round in 0..2i64 {
                for i in 0..n {
                    l.observe(
                        i,
                        None,
                        std::slice::from_ref(&pm),
                        act(round * 100 + i64::from(i), risk, false),
                    );
                }
            }
            l.campaign_roots().len()
        };
        assert_eq!(run(8, 0.85), 0);
        assert_eq!(run(12, 0.85), 1);
        assert_eq!(run(7, 0.97), 1);
        assert_eq!(run(6, 0.97), 0);
    }

    #[test]
    fn dormant_accounts_join_through_a_dense_payment_method() {
        let mut l = Linker::new(Config::default());
        let info = AccountInfo {
            payment_fingerprint: Some("pm_ring".into()),
            ..Default::default()
        };
        for i in 0..5u32 {
            l.register(i, &info);
        }
        // Four accounts, two requests each. At account 1's first request
        // only 2 of the card's 5 accounts were suspicious (not dense); at
        // account 2's, 3 of 5 were, and all three joined.
        for round in 0..2i64 {
            for i in 0..4u32 {
                l.observe(i, None, &[], act(round * 100 + i as i64 * 10, 0.9, true));
            }
        }
        l.link_dormant(4);
        let (root, at) = l.campaign_flag_at(4).unwrap();
        assert_eq!(l.size_of(root), 5);
        // Confirmed then: 3 accounts linked, all flagged.
        assert_eq!(at, 20);
        // An honest family card shared by two quiet accounts links nothing.
        let card = AccountInfo {
            payment_fingerprint: Some("pm_family".into()),
            ..Default::default()
        };
        l.register(10, &card);
        l.register(11, &card);
        l.observe(10, None, &[], act(100, 0.1, false));
        l.link_dormant(11);
        assert!(l.campaign_flag_at(11).is_none());
    }

    #[test]
    fn two_campaigns_sharing_prompts_and_one_exit_stay_apart() {
        let mut l = Linker::new(Config::default());
        let shared: Vec<Key> = (0..6)
            .map(|t| key(Kind::Template, &format!("t{t}")))
            .chain([
                key(Kind::Ip, "86.128.72.190"),
                key(Kind::SystemPrompt, "orca"),
            ])
            .collect();
        for round in 0..3i64 {
            for i in 0..10u32 {
                let mut keys = shared.clone();
                keys.push(key(Kind::Payment, if i < 5 { "pm_a" } else { "pm_b" }));
                l.observe(i, None, &keys, act(round * 100 + i as i64, 0.95, true));
            }
        }
        let roots = l.campaign_roots();
        assert_eq!(roots.len(), 2, "{roots:?}");
        assert!(roots.iter().all(|&r| l.size_of(r) == 5));
    }

    #[test]
    fn a_library_of_prompts_links_accounts_with_no_identity_of_their_own() {
        // Accounts without records, each on its own rotating exits, sharing
        // five system prompts (Glasswally's shape): content is all that
        // ties them. Two or three shared prompts would not be enough.
        let run = |prompts: usize, risk: f64| {
            let mut l = Linker::new(Config::default());
            for round in 0..3i64 {
                for i in 0..12u32 {
                    let keys: Vec<Key> = (0..prompts)
                        .map(|p| key(Kind::SystemPrompt, &format!("sp{p}")))
                        .chain([key(Kind::Ip, &format!("198.51.{i}.{round}"))])
                        .collect();
                    l.observe(i, None, &keys, act(round * 100 + i as i64, risk, false));
                }
            }
            l.campaign_roots().iter().map(|&r| l.size_of(r)).max()
        };
        // Twelve members pool 12 × (logit(risk) − logit(0.3)): at 0.6,
        // about 15 < 20; at 0.7, about 20.3. A network of weak accounts is
        // confirmed by its members together.
        assert_eq!(run(5, 0.6), None);
        assert_eq!(run(5, 0.7), Some(12));
        assert_eq!(run(3, 0.7), None);
    }

    #[test]
    fn exits_and_a_template_join_accounts_without_a_shared_payment_method() {
        // A reseller's accounts: own cards, the same four datacenter exits.
        let mut l = Linker::new(Config::default());
        for round in 0..4i64 {
            for i in 0..6u32 {
                let keys = [
                    key(Kind::Ip, &format!("203.0.113.{}", (i as i64 + round) % 4)),
                    key(Kind::Template, "t"),
                    key(Kind::Payment, &format!("pm_{i}")),
                ];
                l.observe(i, None, &keys, act(round * 100 + i as i64, 0.9, true));
            }
        }
        let roots = l.campaign_roots();
        assert_eq!(roots.len(), 1);
        assert_eq!(l.size_of(roots[0]), 6);
    }

    #[test]
    fn config_is_validated() {
        assert!(Config::default().validate().is_ok());
        let bad = Config {
            min_flagged: 5,
            min_accounts: 3,
            ..Config::default()
        };
        assert!(bad.validate().is_err());
    }
}
