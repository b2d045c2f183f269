/*!
Limits shared across gateway replicas, in Redis (`[cluster] redis_url`).

Each admission is one atomic Lua script (GCRA, the same arithmetic as
[`crate::limits::Limiter`]): it checks the key's limit and the account's
and charges both only if both admit, so two replicas never admit more than
the limit between them. The script's keys share one hash slot (the account
in braces, as a hash of its id), so it runs on Redis Cluster too; no
module (redis-cell) is needed. Keys expire once their allowance is whole
again.

If Redis cannot be reached within `redis_timeout_ms`, the gateway falls
back to its own local limits (fail open, the default) or answers 503
(`redis_fail_closed`), and counts it in `/metrics`.

The client is a small RESP2 client over one of a few pooled connections:
a command per admission, no pipelining. It sends `EVALSHA` and loads the
script on `NOSCRIPT`.
*/

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::limits::Unit;

/// GCRA over pairs of keys (a key's limit and its account's, per unit):
/// `KEYS[2i-1]`, `KEYS[2i]` for limit pair `i`. ARGV: now (ms), check ("1":
/// admit or refuse; "0": charge without a check), then per pair its cost
/// and its rate per minute. Every limit is checked before any is charged,
/// so an admission is all or nothing. Returns `{0, 0}` when admitted,
/// else `{j, wait_ms}` with `j` the refusing key's index.
const SCRIPT: &str = r#"
local now = tonumber(ARGV[1])
local check = ARGV[2] == '1'
local minute = 60000
local tats, steps = {}, {}
for j = 1, #KEYS do
  local p = math.floor((j + 1) / 2)
  local cost = tonumber(ARGV[1 + 2 * p])
  local per_minute = tonumber(ARGV[2 + 2 * p])
  local step = math.max(cost, 0) * (minute / math.max(per_minute, 1e-9))
  if check then step = math.min(step, minute) end
  local t = tonumber(redis.call('GET', KEYS[j]) or now)
  if t < now then t = now end
  if check then
    local over = t + step - now - minute
    if over > 0 then return {j, math.ceil(over)} end
  end
  tats[j], steps[j] = t, step
end
for j = 1, #KEYS do
  local new = tats[j] + steps[j]
  redis.call('SET', KEYS[j], string.format('%.3f', new), 'PX', math.ceil(new - now + minute))
end
return {0, 0}
"#;

/// What Redis answered.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// Why a shared admission could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("redis: {0}")]
    Io(#[from] std::io::Error),
    #[error("redis: no answer within {0} ms")]
    Timeout(u64),
    #[error("redis answered: {0}")]
    Redis(String),
    #[error("redis: unexpected answer {0}")]
    Protocol(String),
}

struct Conn {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn, SharedError> {
        let s = TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        let (r, w) = s.into_split();
        Ok(Conn {
            r: BufReader::new(r),
            w,
        })
    }

    async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, SharedError> {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&buf).await?;
        read_reply(&mut self.r).await
    }
}

/// Reads one RESP2 reply (arrays nest at most a few levels here).
fn read_reply<'a>(
    r: &'a mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply, SharedError>> + Send + 'a>> {
    Box::pin(async move {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Err(SharedError::Protocol("connection closed".into()));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (kind, rest) = line.split_at(line.len().min(1));
        let num = || {
            rest.parse::<i64>()
                .map_err(|_| SharedError::Protocol(line.to_string()))
        };
        Ok(match kind {
            "+" => Reply::Simple(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(num()?),
            "$" => {
                let n = num()?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut b = vec![0u8; n as usize + 2];
                    r.read_exact(&mut b).await?;
                    b.truncate(n as usize);
                    Reply::Bulk(Some(b))
                }
            }
            "*" => {
                let n = num()?;
                let mut v = Vec::with_capacity(n.max(0) as usize);
                for _ in 0..n.max(0) {
                    v.push(read_reply(r).await?);
                }
                Reply::Array(v)
            }
            _ => return Err(SharedError::Protocol(line.to_string())),
        })
    })
}

/// The SHA-1 of the script, as Redis names it (computed by Redis on the
/// first `SCRIPT LOAD`).
/// Shared limits over a small pool of connections.
pub struct Shared {
    addr: String,
    pool: Vec<tokio::sync::Mutex<Option<Conn>>>,
    next: AtomicUsize,
    sha: tokio::sync::Mutex<Option<String>>,
    timeout: Duration,
    /// Admissions Redis could not decide (fallen back, or refused closed).
    pub errors: AtomicU64,
}

fn slot(account: &str) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in account.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The Redis key of a Responses answer's entry.
fn chain_key(id: &str) -> String {
    format!("dg:chain:{id}")
}

/// `depth assistant account` (the account last: it may hold spaces).
fn parse_chain(v: &str) -> Option<crate::chains::Entry> {
    let mut it = v.splitn(3, ' ');
    let depth = it.next()?.parse().ok()?;
    let assistant = it.next()?.parse().ok()?;
    Some((it.next()?.to_string(), depth, assistant))
}

/// The Redis keys of a key's and its account's limit on `unit`, in one
/// hash slot (`{…}`: the account's hash).
pub fn keys_of(key_id: &str, account: &str, unit: Unit) -> (String, String) {
    let u = match unit {
        Unit::Requests => "r",
        Unit::Tokens => "t",
    };
    let s = slot(account);
    // The key id is hashed too: nothing a client chose goes into a key.
    (
        format!("dg:{{{s}}}:k:{}:{u}", slot(key_id)),
        format!("dg:{{{s}}}:a:{u}"),
    )
}

impl Shared {
    /// `url`: `redis://host:port` (no auth, database 0).
    pub fn new(
        url: &str,
        timeout: Duration,
        connections: usize,
    ) -> Result<Shared, distillguard_core::Invalid> {
        let rest = url.strip_prefix("redis://").ok_or_else(|| {
            distillguard_core::Invalid(format!("{url:?}: expected redis://host:port"))
        })?;
        let addr = rest.trim_end_matches('/');
        if addr.is_empty() || addr.contains('@') || addr.contains('/') {
            return Err(distillguard_core::Invalid(format!(
                "{url:?}: expected redis://host:port (no user, password or database)"
            )));
        }
        let addr = if addr.contains(':') {
            addr.to_string()
        } else {
            format!("{addr}:6379")
        };
        Ok(Shared {
            addr,
            pool: (0..connections.max(1))
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
            sha: tokio::sync::Mutex::new(None),
            timeout,
            errors: AtomicU64::new(0),
        })
    }

    async fn call(&self, args: &[&[u8]]) -> Result<Reply, SharedError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        let mut slot = self.pool[i].lock().await;
        // The connection is out of its slot while a command is in flight,
        // and goes back only with its reply read. A call cut short (the
        // caller's timeout drops this future) drops the connection with
        // it: kept, it would hand the late reply to the next command.
        let mut c = match slot.take() {
            Some(c) => c,
            None => Conn::open(&self.addr).await?,
        };
        let r = c.call(args).await?;
        *slot = Some(c);
        Ok(r)
    }

    async fn sha(&self) -> Result<String, SharedError> {
        let mut s = self.sha.lock().await;
        if let Some(sha) = s.as_ref() {
            return Ok(sha.clone());
        }
        match self.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]).await? {
            Reply::Bulk(Some(b)) => {
                let sha = String::from_utf8_lossy(&b).into_owned();
                *s = Some(sha.clone());
                Ok(sha)
            }
            other => Err(SharedError::Protocol(format!("{other:?}"))),
        }
    }

    async fn eval(
        &self,
        key_id: &str,
        account: &str,
        limits: &[(Unit, f64, f64)],
        now_ms: f64,
        check: bool,
    ) -> Result<Result<(), (Unit, bool, u64)>, SharedError> {
        let mut keys = Vec::with_capacity(limits.len() * 2);
        let mut args: Vec<String> = vec![
            format!("{now_ms:.3}"),
            if check { "1" } else { "0" }.to_string(),
        ];
        for (unit, cost, rate) in limits {
            let (k, a) = keys_of(key_id, account, *unit);
            keys.push(k);
            keys.push(a);
            args.push(format!("{cost}"));
            args.push(format!("{rate}"));
        }
        let n = keys.len().to_string();
        for _ in 0..2 {
            let sha = self.sha().await?;
            let mut call: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), n.as_bytes()];
            call.extend(keys.iter().map(|k| k.as_bytes()));
            call.extend(args.iter().map(|a| a.as_bytes()));
            match self.call(&call).await? {
                Reply::Array(v) => {
                    return match v.as_slice() {
                        [Reply::Int(0), _] => Ok(Ok(())),
                        [Reply::Int(j), Reply::Int(wait)] if *j >= 1 => {
                            let j = (*j - 1) as usize;
                            let unit = limits.get(j / 2).map_or(Unit::Requests, |l| l.0);
                            Ok(Err((
                                unit,
                                j % 2 == 1,
                                ((*wait as f64) / 1000.0).ceil().max(1.0) as u64,
                            )))
                        }
                        _ => Err(SharedError::Protocol(format!("{v:?}"))),
                    };
                }
                Reply::Error(e) if e.starts_with("NOSCRIPT") => {
                    // Redis restarted or flushed its scripts: load again.
                    *self.sha.lock().await = None;
                }
                Reply::Error(e) => return Err(SharedError::Redis(e)),
                other => return Err(SharedError::Protocol(format!("{other:?}"))),
            }
        }
        Err(SharedError::Redis("NOSCRIPT twice".into()))
    }

    /// `f` within the timeout; a failure is counted.
    async fn within<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, SharedError>>,
    ) -> Result<T, SharedError> {
        let ms = self.timeout.as_millis() as u64;
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(SharedError::Timeout(ms)),
        }
        .inspect_err(|_| {
            self.errors.fetch_add(1, Ordering::Relaxed);
        })
    }

    /// A command within the timeout; a failure is counted.
    async fn timed(&self, args: &[&[u8]]) -> Result<Reply, SharedError> {
        self.within(self.call(args)).await
    }

    /// The Responses answer `id`'s entry another replica kept
    /// ([`crate::chains`]), if any.
    pub async fn chain(&self, id: &str) -> Result<Option<crate::chains::Entry>, SharedError> {
        let key = chain_key(id);
        match self.timed(&[b"GET", key.as_bytes()]).await? {
            Reply::Bulk(None) => Ok(None),
            Reply::Bulk(Some(b)) => Ok(parse_chain(&String::from_utf8_lossy(&b))),
            other => Err(SharedError::Protocol(format!("{other:?}"))),
        }
    }

    /// Keeps the Responses answer `id`'s entry for a day.
    pub async fn keep_chain(
        &self,
        id: &str,
        (account, depth, assistant): &crate::chains::Entry,
    ) -> Result<(), SharedError> {
        let key = chain_key(id);
        let value = format!("{depth} {assistant} {account}");
        match self
            .timed(&[b"SET", key.as_bytes(), value.as_bytes(), b"EX", b"86400"])
            .await?
        {
            Reply::Simple(_) => Ok(()),
            Reply::Error(e) => Err(SharedError::Redis(e)),
            other => Err(SharedError::Protocol(format!("{other:?}"))),
        }
    }

    /// [`Shared::eval`] within the timeout; a failure is counted.
    async fn run(
        &self,
        key_id: &str,
        account: &str,
        limits: &[(Unit, f64, f64)],
        now_ms: f64,
        check: bool,
    ) -> Result<Result<(), (Unit, bool, u64)>, SharedError> {
        self.within(self.eval(key_id, account, limits, now_ms, check))
            .await
    }

    /// Admits every limit of `limits` (unit, cost, rate per minute) on the
    /// key and its account at once, in one round trip: all or nothing.
    /// Refused: the unit, whether the account's limit (else the key's),
    /// and the seconds to wait.
    pub async fn admit_all(
        &self,
        key_id: &str,
        account: &str,
        limits: &[(Unit, f64, f64)],
        now_ms: f64,
    ) -> Result<Result<(), (Unit, bool, u64)>, SharedError> {
        self.run(key_id, account, limits, now_ms, true).await
    }

    /// Charges `cost` units to both limits without a check.
    pub async fn charge(
        &self,
        key_id: &str,
        account: &str,
        unit: Unit,
        cost: f64,
        per_minute: f64,
        now_ms: f64,
    ) -> Result<(), SharedError> {
        self.run(key_id, account, &[(unit, cost, per_minute)], now_ms, false)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_entry_reads_back_with_spaces_in_its_account() {
        let e = ("acct with spaces".to_string(), 7, 3);
        let v = format!("{} {} {}", e.1, e.2, e.0);
        assert_eq!(parse_chain(&v), Some(e));
        assert_eq!(parse_chain("x 1 a"), None);
        assert_eq!(parse_chain("1 2"), None);
    }

    #[test]
    fn a_key_and_its_account_share_one_hash_slot() {
        let (k, a) = keys_of("key_1", "acct_{x}", Unit::Requests);
        let tag = |s: &str| {
            s.split('{')
                .nth(1)
                .and_then(|t| t.split('}').next())
                .map(str::to_string)
        };
        assert_eq!(tag(&k), tag(&a));
        assert!(!k.contains("acct_") && !k.contains("key_1"), "{k}");
        assert_ne!(keys_of("key_1", "acct_y", Unit::Requests).1, a);
        assert_ne!(keys_of("key_1", "acct_{x}", Unit::Tokens).1, a);
    }

    /// A RESP server that answers `GET k` with `k`, after `delay` for
    /// the key `slow`; each connection on its own task.
    async fn fake_redis(delay: Duration) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut r = BufReader::new(r);
                    loop {
                        // *2 $3 GET $n key
                        let mut lines = Vec::new();
                        for _ in 0..5 {
                            let mut line = String::new();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            lines.push(line.trim_end().to_string());
                        }
                        let key = lines[4].clone();
                        if key == "slow" {
                            tokio::time::sleep(delay).await;
                        }
                        let reply = format!("${}\r\n{key}\r\n", key.len());
                        if w.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_timed_out_command_does_not_hand_its_reply_to_the_next() {
        let addr = fake_redis(Duration::from_millis(300)).await;
        let s = Shared::new(&format!("redis://{addr}"), Duration::from_millis(100), 1).unwrap();
        let get = |k: &'static str| {
            let s = &s;
            async move { s.timed(&[b"GET", k.as_bytes()]).await }
        };
        assert!(matches!(get("slow").await, Err(SharedError::Timeout(_))));
        // The late "slow" reply must not answer these.
        tokio::time::sleep(Duration::from_millis(400)).await;
        for k in ["first", "second"] {
            match get(k).await {
                Ok(Reply::Bulk(Some(b))) => assert_eq!(b, k.as_bytes()),
                other => panic!("{k}: {other:?}"),
            }
        }
    }

    #[test]
    fn urls_are_host_and_port_only() {
        let t = Duration::from_millis(20);
        assert_eq!(
            Shared::new("redis://127.0.0.1:6379", t, 2).map(|s| s.addr),
            Ok("127.0.0.1:6379".to_string())
        );
        assert_eq!(
            Shared::new("redis://cache", t, 2).map(|s| s.addr),
            Ok("cache:6379".to_string())
        );
        assert!(Shared::new("http://x", t, 2).is_err());
        assert!(Shared::new("redis://u:p@x:1", t, 2).is_err());
    }
}
