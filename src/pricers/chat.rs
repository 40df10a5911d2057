//! Chat models behind any OpenAI-compatible `/chat/completions` endpoint (OpenAI, Ollama, a
//! llama.cpp server, vLLM), with the original's messages and reply parsing, optionally with the
//! 5 (or k) nearest training items as context (the week-8 RAG pricer).
//!
//! The API key is read from the environment variable the spec names, at call time, and sent
//! only in the `Authorization` header: it is never written to a file, a log, an evaluation or an
//! error message. Calls run `concurrency` at a time, each with a timeout; 429, 5xx, timeouts and
//! lost connections are retried with exponential backoff (a `Retry-After` wins); every reply is
//! cached by (endpoint, model, messages, limits) so a re-run costs nothing.

use super::embed::{Embedder, embed_items, nearest, resolve};
use super::{Guess, Pricer, description};
use crate::evaluation::{ChatSpec, Usage};
use crate::items::{ItemRef, ItemTable};
use crate::jobs::JobCtx;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// The original system message.
pub const SYSTEM: &str = "You estimate prices of items. Reply only with the price, no explanation";
/// The assistant prefill.
pub const PREFILL: &str = "Price is $";

/// The original zero-shot messages for a test prompt.
pub fn messages(test_prompt: &str) -> Value {
    let user = test_prompt.replace(" to the nearest dollar", "").replace("\n\nPrice is $", "");
    json!([
        { "role": "system", "content": SYSTEM },
        { "role": "user", "content": user },
        { "role": "assistant", "content": PREFILL },
    ])
}

/// The week-8 messages: context of similar items with their prices, then the item.
pub fn rag_messages(item_description: &str, similar: &[(&str, f64)]) -> Value {
    let mut user = String::from(
        "To provide some context, here are some other items that might be similar to the item you need to estimate.\n\n",
    );
    for (text, price) in similar {
        user.push_str(&format!("Potentially related product:\n{text}\nPrice is ${price:.2}\n\n"));
    }
    user.push_str("And now the question for you:\n\n");
    user.push_str("How much does this cost?\n\n");
    user.push_str(item_description);
    json!([
        { "role": "system", "content": SYSTEM },
        { "role": "user", "content": user },
        { "role": "assistant", "content": PREFILL },
    ])
}

static NUMBER: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"[-+]?\d*\.\d+|\d+").expect("valid pattern"));

/// Reads a price from a reply: a leading `Price is $` is dropped (servers that answer afresh
/// repeat it), then `$` and `,`; the first number, else `None`.
pub fn parse_price(reply: &str) -> Option<f64> {
    let r = reply.trim_start();
    let r = r.strip_prefix(PREFILL).unwrap_or(r);
    let s = r.replace(['$', ','], "");
    NUMBER.find(&s).and_then(|m| m.as_str().parse().ok())
}

#[derive(Serialize, Deserialize)]
struct CachedReply {
    key: String,
    reply: String,
    prompt_tokens: u64,
    completion_tokens: u64,
}

struct ReplyCache {
    path: PathBuf,
    map: HashMap<String, CachedReply>,
}

impl ReplyCache {
    fn open(path: PathBuf) -> Self {
        let map = std::fs::read_to_string(&path)
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str::<CachedReply>(l).ok())
                    .map(|r| (r.key.clone(), r))
                    .collect()
            })
            .unwrap_or_default();
        Self { path, map }
    }

    fn put(&mut self, r: CachedReply) -> Result<()> {
        if let Some(d) = self.path.parent() {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        let line = serde_json::to_string(&r).map_err(|e| Error::InvalidInput(e.to_string()))? + "\n";
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        f.write_all(line.as_bytes()).map_err(|e| Error::io(&self.path, e))?;
        self.map.insert(r.key.clone(), r);
        Ok(())
    }
}

/// A chat model as a pricer.
pub struct ChatPricer {
    spec: ChatSpec,
    url: String,
    agent: ureq::Agent,
    cache: Mutex<ReplyCache>,
    rag: Option<Rag>,
    calls: AtomicU64,
    cached: AtomicU64,
    retries: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

struct Rag {
    embedder: Embedder,
    index: Vec<Vec<f32>>,
    texts: Vec<String>,
    prices: Vec<f64>,
}

impl ChatPricer {
    /// Prepares the client (and, for RAG, embeds the training items).
    pub fn new(spec: &ChatSpec, train: Option<&ItemTable>, cache_dir: &Path, ctx: &JobCtx) -> Result<Self> {
        if spec.model.is_empty() || spec.base_url.is_empty() {
            return Err(Error::InvalidInput("a chat pricer needs a model name and a base URL".into()));
        }
        if let Some(var) = &spec.api_key_env
            && std::env::var_os(var).is_none()
        {
            return Err(Error::InvalidInput(format!("the API key variable {var} is not set")));
        }
        let rag = match train {
            Some(t) if spec.rag > 0 => {
                let embedder = Embedder::load(&resolve(&spec.embedder), cache_dir)?;
                let index = embed_items(&embedder, t, ctx)?;
                let texts = (0..t.len()).map(|i| description(t.get(i).prompt)).collect();
                Some(Rag { embedder, index, texts, prices: t.prices().to_vec() })
            }
            _ => None,
        };
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs_f64(spec.timeout_s.max(0.001))).build();
        let url = format!("{}/chat/completions", spec.base_url.trim_end_matches('/'));
        Ok(Self {
            spec: spec.clone(),
            url,
            agent,
            cache: Mutex::new(ReplyCache::open(cache_dir.join("chat").join("replies.jsonl"))),
            rag,
            calls: AtomicU64::new(0),
            cached: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
        })
    }

    /// The request body for messages.
    fn body(&self, messages: &Value) -> Value {
        let mut b = json!({ "model": self.spec.model, "messages": messages });
        b[&self.spec.max_tokens_field] = json!(self.spec.max_tokens);
        if let Some(seed) = self.spec.seed {
            b["seed"] = json!(seed);
        }
        b
    }

    /// Hides the key in a message, should a server echo it.
    fn redact(&self, text: String) -> String {
        match self.spec.api_key_env.as_ref().and_then(std::env::var_os) {
            Some(k) if !k.is_empty() => text.replace(&*k.to_string_lossy(), "***"),
            _ => text,
        }
    }

    /// One call (from the cache when it holds the reply).
    fn ask(&self, messages: &Value, cancel: &AtomicBool, ctx: &JobCtx) -> Result<String> {
        let body = self.body(messages);
        let key: String =
            Sha256::digest(format!("{}\n{}", self.url, body).as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        if let Some(r) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).map.get(&key) {
            self.cached.fetch_add(1, Ordering::Relaxed);
            return Ok(r.reply.clone());
        }
        let text = body.to_string();
        let mut attempt = 0u32;
        loop {
            if cancel.load(Ordering::Relaxed) || ctx.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let mut req = self.agent.post(&self.url).set("Content-Type", "application/json");
            if let Some(var) = &self.spec.api_key_env {
                let k = std::env::var(var).unwrap_or_default();
                req = req.set("Authorization", &format!("Bearer {k}"));
            }
            self.calls.fetch_add(1, Ordering::Relaxed);
            let (retry, wait, why) = match req.send_string(&text) {
                Ok(resp) => {
                    let raw = resp.into_string().map_err(|e| Error::Model(format!("chat {}: {e}", self.url)))?;
                    let v: Value = serde_json::from_str(&raw).map_err(|e| {
                        Error::Model(self.redact(format!(
                            "chat {}: the reply is not JSON ({e}): {}",
                            self.url,
                            raw.chars().take(200).collect::<String>()
                        )))
                    })?;
                    let reply = v["choices"][0]["message"]["content"].as_str().ok_or_else(|| {
                        Error::Model(self.redact(format!(
                            "chat {}: no choices[0].message.content in the reply: {}",
                            self.url,
                            raw.chars().take(200).collect::<String>()
                        )))
                    })?;
                    let pt = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
                    let ct = v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                    self.prompt_tokens.fetch_add(pt, Ordering::Relaxed);
                    self.completion_tokens.fetch_add(ct, Ordering::Relaxed);
                    self.cache.lock().unwrap_or_else(|e| e.into_inner()).put(CachedReply {
                        key,
                        reply: reply.to_owned(),
                        prompt_tokens: pt,
                        completion_tokens: ct,
                    })?;
                    return Ok(reply.to_owned());
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let after = resp.header("Retry-After").and_then(|s| s.trim().parse::<f64>().ok());
                    let body = resp.into_string().unwrap_or_default();
                    let why = format!("HTTP {code}: {}", body.chars().take(200).collect::<String>());
                    (code == 429 || code >= 500, after, why)
                }
                Err(ureq::Error::Transport(t)) => (true, None, t.to_string()),
            };
            if !retry || attempt >= self.spec.retries {
                let tries = attempt + 1;
                return Err(Error::Model(self.redact(format!("chat {}: {why} (after {tries} tries)", self.url))));
            }
            let backoff = self.spec.backoff_ms as f64 / 1000.0 * 2f64.powi(attempt as i32);
            let secs = wait.unwrap_or(backoff).clamp(0.0, 60.0);
            ctx.log(crate::jobs::Level::Warning, &self.redact(format!("chat: {why}; retrying in {secs:.1}s")));
            self.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_secs_f64(secs));
            attempt += 1;
        }
    }

    /// The messages for an item.
    fn messages_for(&self, item: &ItemRef<'_>, ctx: &JobCtx) -> Result<Value> {
        match &self.rag {
            None => Ok(messages(item.test_prompt())),
            Some(r) => {
                let d = description(item.prompt);
                let q = r.embedder.embed(&[d.as_str()], ctx)?;
                let nn = nearest(&r.index, &q[0], self.spec.rag);
                let similar: Vec<(&str, f64)> = nn.iter().map(|&(i, _)| (r.texts[i].as_str(), r.prices[i])).collect();
                Ok(rag_messages(&d, &similar))
            }
        }
    }
}

impl Pricer for ChatPricer {
    fn price(&self, batch: &[(usize, ItemRef<'_>)], ctx: &JobCtx) -> Result<Vec<Guess>> {
        let msgs: Vec<Value> = batch.iter().map(|(_, it)| self.messages_for(it, ctx)).collect::<Result<_>>()?;
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let results: Vec<Mutex<Option<Result<String>>>> = (0..msgs.len()).map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..self.spec.concurrency.clamp(1, 64).min(msgs.len()) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= msgs.len() || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let r = self.ask(&msgs[i], &stop, ctx);
                        if r.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                    }
                });
            }
        });
        let mut out = Vec::with_capacity(msgs.len());
        let mut first_error = None;
        for r in results {
            match r.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(Ok(reply)) => {
                    let p = parse_price(&reply);
                    out.push(Guess { price: p.unwrap_or(0.0), unparsable: p.is_none(), reply: Some(reply) });
                }
                // The first real error wins over the cancellations it caused in other calls.
                Some(Err(e)) if first_error.is_none() || matches!(first_error, Some(Error::Cancelled)) => {
                    first_error = Some(e);
                }
                Some(Err(_)) => {}
                None => {}
            }
        }
        match first_error {
            Some(e) => Err(e),
            None if out.len() == batch.len() => Ok(out),
            None => Err(Error::Cancelled),
        }
    }
    fn batch_size(&self) -> usize {
        (self.spec.concurrency * 4).max(8)
    }
    fn parallel_batches(&self) -> bool {
        false
    }
    fn fitted(&self) -> serde_json::Value {
        json!({ "endpoint": self.url, "model": self.spec.model, "rag": self.spec.rag,
            "rag_index": self.rag.as_ref().map_or(0, |r| r.index.len()) })
    }
    fn usage(&self) -> Option<Usage> {
        Some(Usage {
            calls: self.calls.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
        })
    }
}
