/*!
The populations of a scenario, each in its own module:
[`benign`] humans, [`products`] legitimate heavy customers (hard
negatives), [`campaign`] distillation campaigns. They all add accounts and
specs to one [`Ctx`].
*/

pub mod benign;
pub mod campaign;
pub mod products;

use crate::corpus::Corpus;
use crate::world::{CampaignRt, ModelRt, SimAccount, Spec};

pub struct Ctx<'c> {
    pub seed: u64,
    pub start: i64,
    pub end: i64,
    pub corpus: &'c Corpus,
    pub models: Vec<ModelRt>,
    pub accounts: Vec<SimAccount>,
    pub specs: Vec<Spec>,
    pub campaigns: Vec<CampaignRt>,
    /// Conversations people draw from (the first this many of the corpus).
    pub conversations: usize,
    seq: Vec<u32>,
    /// Uses so far of each real (conversation, user turn).
    turn_uses: std::collections::HashMap<(u32, u8), u16>,
}

impl<'c> Ctx<'c> {
    pub fn new(seed: u64, start: i64, end: i64, corpus: &'c Corpus, models: Vec<ModelRt>) -> Self {
        Ctx {
            seed,
            start,
            end,
            corpus,
            models,
            accounts: Vec::new(),
            specs: Vec::new(),
            campaigns: Vec::new(),
            conversations: corpus.conversations.len(),
            seq: Vec::new(),
            turn_uses: std::collections::HashMap::new(),
        }
    }

    pub fn add_account(&mut self, a: SimAccount) -> u32 {
        self.accounts.push(a);
        self.seq.push(0);
        (self.accounts.len() - 1) as u32
    }

    /// Counts a use of a real user turn; returns the uses before this one.
    pub fn use_turn(&mut self, conv: u32, turn: u8) -> u16 {
        let n = self.turn_uses.entry((conv, turn)).or_insert(0);
        let before = *n;
        *n = n.saturating_add(1);
        before
    }

    /// Adds a spec inside the scenario's span, numbering it per account.
    pub fn push(&mut self, mut s: Spec) {
        if s.ts < self.start || s.ts >= self.end {
            return;
        }
        let counter = &mut self.seq[s.account as usize];
        s.seq = *counter;
        *counter += 1;
        self.specs.push(s);
    }
}
