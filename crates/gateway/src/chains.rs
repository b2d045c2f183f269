/*!
Responses conversations the gateway has seen, so that a request that
continues one (`previous_response_id`) is scored with the depth of the
whole conversation, not only the turn it carries.

The upstream stores the conversation; the client sends only its new turn.
Without this, every turn of a stored conversation would look like a first
message. The gateway remembers, per answer id it served, whose it was and
how deep the conversation was after it; a continuation by the same
account adds that depth. With shared limits (`[cluster] redis_url`) the
entries are also kept in Redis for a day, so a conversation continued
through another replica is known too. An id no replica served (a lost
entry, another account's id) is left as the body says, marked as
continuing an unknown conversation (`Request::continues`).
*/

use std::collections::HashMap;
use std::sync::Mutex;

use distillguard_core::Request;

/// Answers remembered at most; past it the memory starts over (a
/// continuation of a forgotten answer is scored as unknown, as after a
/// restart).
pub const MAX_CHAINS: usize = 1 << 20;

/// What is kept of an answer: its owner, and the conversation's depth and
/// assistant turns after it.
pub type Entry = (String, u32, u32);

#[derive(Default)]
pub struct Chains(Mutex<HashMap<String, Entry>>);

impl Chains {
    /// The entry of answer `id`, if this gateway holds it.
    pub fn get(&self, id: &str) -> Option<Entry> {
        self.0.lock().ok()?.get(id).cloned()
    }

    /// Holds an entry learnt elsewhere (another replica's, from Redis).
    pub fn insert(&self, id: &str, e: Entry) {
        let Ok(mut m) = self.0.lock() else { return };
        if m.len() >= MAX_CHAINS {
            m.clear();
        }
        m.insert(id.to_string(), e);
    }

    /// Adds the depth behind `r`'s `previous_response_id` when this
    /// account's earlier answer is known; returns whether it was.
    pub fn extend(&self, account: &str, r: &mut Request) -> bool {
        let Some(prev) = r.previous_response_id.as_deref() else {
            return false;
        };
        let Ok(m) = self.0.lock() else { return false };
        match m.get(prev) {
            Some((owner, depth, assistant)) if owner == account => {
                r.depth = r.depth.saturating_add(*depth);
                r.assistant_turns = r.assistant_turns.saturating_add(*assistant);
                true
            }
            _ => false,
        }
    }

    /// Remembers answer `id` to `r` (already extended): the conversation
    /// is then one assistant turn deeper. Returns the entry (for Redis).
    pub fn remember(&self, id: &str, account: &str, r: &Request) -> Entry {
        let e = (
            account.to_string(),
            r.depth.saturating_add(1),
            r.assistant_turns.saturating_add(1),
        );
        self.insert(id, e.clone());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(prev: Option<&str>) -> Request {
        Request {
            depth: 1,
            previous_response_id: prev.map(str::to_string),
            continues: prev.is_some(),
            ..Request::default()
        }
    }

    #[test]
    fn a_stored_conversation_counts_its_whole_depth() {
        let c = Chains::default();
        let first = turn(None);
        c.remember("resp_1", "acct_a", &first);
        let mut second = turn(Some("resp_1"));
        assert!(c.extend("acct_a", &mut second));
        assert_eq!((second.depth, second.assistant_turns), (3, 1));
        c.remember("resp_2", "acct_a", &second);
        let mut third = turn(Some("resp_2"));
        assert!(c.extend("acct_a", &mut third));
        assert_eq!((third.depth, third.assistant_turns), (5, 2));
    }

    #[test]
    fn another_accounts_or_an_unknown_answer_adds_nothing() {
        let c = Chains::default();
        c.remember("resp_1", "acct_a", &turn(None));
        let mut other = turn(Some("resp_1"));
        assert!(!c.extend("acct_b", &mut other));
        assert_eq!(other.depth, 1);
        let mut unknown = turn(Some("resp_9"));
        assert!(!c.extend("acct_a", &mut unknown));
        assert!(unknown.continues);
    }
}
