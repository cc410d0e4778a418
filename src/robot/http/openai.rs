//! The OpenAI-compatible chat robot: `POST {base}/chat/completions`, as served by Ollama,
//! llama.cpp's `llama-server`, vLLM and hosted OpenAI-compatible APIs.
//!
//! Each request carries the optional system prompt, the conversation's last few turns (kept by
//! [`History`], bounded) and the new text; the reply is `choices[0].message.content`. When the
//! model says the request is past its context, the oldest turns are dropped and the request
//! sent again within the same budget; a message too long on its own is answered with
//! [`RobotError::Rejected`], which tells the user so.

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ureq::RequestBuilder;

use super::history::{History, Limits, Turn};
use super::{join_url, json_str, scrub, Client, Exchange, HttpOptions, DEFAULT_OPENAI_URL};
use crate::robot::{deadline_after, Conversation, Request, Robot, RobotError, RobotReport};

/// The API path, as shown in error messages.
const PATH: &str = "/chat/completions";

/// What a user is told when their message alone does not fit the model's context.
pub const TOO_LONG: &str = "your message is too long for the model; please send a shorter one";

/// Settings of an [`OpenAiRobot`].
#[derive(Clone)]
pub struct OpenAiConfig {
    /// The API's base URL, up to and including `/v1`, such as `http://localhost:11434/v1`.
    pub base_url: String,
    /// The API key, sent as `Authorization: Bearer KEY`; no such header if `None`.
    pub key: Option<String>,
    /// The model name, such as `llama3.2`.
    pub model: String,
    /// A system prompt sent first in every request, if any.
    pub system_prompt: Option<String>,
    /// Turns (a message and its reply) kept per conversation and sent with each request; 0 keeps
    /// none.
    pub history_turns: usize,
    /// Characters kept per conversation, both sides of its turns together: a bound on what the
    /// history adds to each request, to fit a small model's context.
    pub history_chars: usize,
    /// Bytes kept for all conversations together; beyond that the least recently used is
    /// forgotten.
    pub history_memory: usize,
    /// Conversations kept; beyond that the least recently used is forgotten.
    pub max_users: usize,
    /// The most tokens the model may answer with (`max_tokens`).
    pub max_tokens: u32,
    /// The sampling temperature (`temperature`), or the server's default.
    pub temperature: Option<f32>,
}

impl Default for OpenAiConfig {
    /// A local Ollama server (`http://localhost:11434/v1`), model `llama3.2`, no key, no system
    /// prompt; 8 turns and 4,000 characters per conversation, for up to 10,000 conversations in
    /// 64 MiB; 512 tokens; the server's temperature.
    fn default() -> Self {
        OpenAiConfig {
            base_url: DEFAULT_OPENAI_URL.to_owned(),
            key: None,
            model: "llama3.2".to_owned(),
            system_prompt: None,
            history_turns: 8,
            history_chars: 4000,
            history_memory: 64 * 1024 * 1024,
            max_users: 10_000,
            max_tokens: 512,
            temperature: None,
        }
    }
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("key", &self.key.as_ref().map(|_| "<hidden>"))
            .field("model", &self.model)
            .field("system_prompt", &self.system_prompt)
            .field("history_turns", &self.history_turns)
            .field("history_chars", &self.history_chars)
            .field("history_memory", &self.history_memory)
            .field("max_users", &self.max_users)
            .field("max_tokens", &self.max_tokens)
            .field("temperature", &self.temperature)
            .finish()
    }
}

/// A robot that answers through an OpenAI-compatible chat-completions API.
pub struct OpenAiRobot {
    client: Client,
    url: String,
    config: OpenAiConfig,
    history: History,
}

impl fmt::Debug for OpenAiRobot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiRobot")
            .field("config", &self.config)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl OpenAiRobot {
    /// A robot with the settings `config`, within the time limits of `options`.
    pub fn new(config: OpenAiConfig, options: HttpOptions) -> Self {
        OpenAiRobot {
            client: Client::new("openai", &config.base_url, options),
            url: join_url(&config.base_url, PATH),
            history: History::new(Limits {
                turns: config.history_turns,
                chars: config.history_chars,
                max_conversations: config.max_users,
                memory: config.history_memory,
            }),
            config,
        }
    }

    /// The request body: system prompt, the conversation's turns, the new text.
    fn request_body(&self, turns: &[Turn], text: &str) -> String {
        let mut messages = Vec::new();
        if let Some(prompt) = &self.config.system_prompt {
            messages.push(json!({ "role": "system", "content": prompt }));
        }
        for turn in turns {
            messages.push(json!({ "role": "user", "content": turn.user }));
            messages.push(json!({ "role": "assistant", "content": turn.reply }));
        }
        messages.push(json!({ "role": "user", "content": text }));
        let mut body = json!({
            "model": self.config.model,
            "messages": messages,
            "max_tokens": self.config.max_tokens,
            "stream": false,
        });
        if let Some(temperature) = self.config.temperature {
            body["temperature"] = json!(temperature);
        }
        body.to_string()
    }

    /// One request with these turns, within what is left until `deadline`.
    fn send(&self, turns: &[Turn], text: &str, deadline: Instant) -> Result<Exchange, RobotError> {
        let body = self.request_body(turns, text);
        self.client.exchange(Some(deadline), |limits| {
            let request = limits
                .apply(self.client.agent().post(&self.url))
                .header("Content-Type", "application/json");
            self.with_key(request).send(body.as_bytes())
        })
    }

    /// `request` with the API key, if there is one, as `Authorization: Bearer KEY`.
    fn with_key<B>(&self, request: RequestBuilder<B>) -> RequestBuilder<B> {
        match &self.config.key {
            Some(key) => request.header("Authorization", format!("Bearer {key}")),
            None => request,
        }
    }

    /// Asks the API which models it serves (`GET {base}/models`), to catch a mistake before the
    /// first user does: `Ok` says what was found, `Err` what is wrong, in words for the operator.
    /// Takes at most `limit`.
    pub fn check_api(&self, limit: Duration) -> Result<String, String> {
        let url = join_url(&self.config.base_url, "/models");
        let shown = self.client.shown_url();
        let exchange = self
            .client
            .exchange(Some(deadline_after(Instant::now(), limit)), |limits| {
                self.with_key(limits.apply(self.client.agent().get(&url)))
                    .call()
            })
            .map_err(|error| {
                format!(
                    "{}; until it answers, users get the next robot's answers or an error",
                    error.reason()
                )
            })?;
        let model = &self.config.model;
        match exchange.status {
            200..=299 => {}
            401 | 403 if self.config.key.is_some() => {
                return Err(format!(
                    "openai: {shown} rejected the API key (HTTP {}); check ROBOCHAT_OPENAI_KEY",
                    exchange.status
                ))
            }
            401 | 403 => {
                return Err(format!(
                    "openai: {shown} wants an API key (HTTP {}); set ROBOCHAT_OPENAI_KEY",
                    exchange.status
                ))
            }
            404 => {
                return Err(format!(
                    "openai: {shown}/models is not there (HTTP 404): is {shown} an \
                     OpenAI-compatible API, with /v1 at the end?"
                ))
            }
            status => return Err(format!("openai: {shown}/models answered HTTP {status}")),
        }
        let listed: Vec<String> = serde_json::from_slice::<Value>(&exchange.body)
            .ok()
            .as_ref()
            .and_then(|value| value.get("data"))
            .and_then(Value::as_array)
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| json_str(m, "id").map(|id| scrub(id, None)))
                    .collect()
            })
            .unwrap_or_default();
        if listed.iter().any(|id| id == model) {
            Ok(format!("openai: {shown} serves model \"{model}\""))
        } else if listed.is_empty() {
            Err(format!(
                "openai: {shown}/models lists no models; is \"{model}\" loaded?"
            ))
        } else {
            Err(format!(
                "openai: {shown} does not list model \"{model}\" (it lists {}); check --model. \
                 (llama.cpp's server answers with its one model whatever the name.)",
                listed
                    .iter()
                    .take(5)
                    .map(|id| format!("\"{id}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }

    /// The reply (or error) for an answer.
    fn read_answer(&self, exchange: &Exchange) -> Result<String, RobotError> {
        let value: Option<Value> = serde_json::from_slice(&exchange.body).ok();
        let said = value
            .as_ref()
            .and_then(error_message)
            .map(|text| scrub(text, self.config.key.as_deref()));
        if !(200..300).contains(&exchange.status) {
            if exchange.status == 401 {
                // OpenAI's own 401 message quotes part of the key: say what to do instead.
                let why = match self.config.key {
                    Some(_) => {
                        "the API key was rejected; check ROBOCHAT_OPENAI_KEY (or \
                                OPENAI_API_KEY)"
                    }
                    None => "the server wants an API key; set ROBOCHAT_OPENAI_KEY",
                };
                return Err(self.client.status_error(exchange, PATH, Some(why)));
            }
            return Err(self.client.status_error(exchange, PATH, said.as_deref()));
        }
        let value = value.ok_or_else(|| self.client.malformed())?;
        if let Some(said) = said {
            return Err(RobotError::Failed(format!("openai: {said}")));
        }
        let Some(choice) = value
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| choices.first())
        else {
            return Err(self.client.malformed());
        };
        match choice
            .get("message")
            .and_then(|message| json_str(message, "content"))
        {
            Some(content) => Ok(content.to_owned()),
            None => Err(RobotError::Failed(format!(
                "openai: model \"{}\" gave an empty answer",
                self.config.model
            ))),
        }
    }
}

/// The error text of an OpenAI-style (`{"error":{"message":..}}`) or Ollama-style
/// (`{"error":".."}`) error body.
fn error_message(value: &Value) -> Option<&str> {
    let error = value.get("error")?;
    match error {
        Value::String(text) => Some(text.trim()).filter(|t| !t.is_empty()),
        _ => json_str(error, "message"),
    }
}

/// Whether an answer says the request was longer than the model's context: llama.cpp's
/// `exceed_context_size_error` ("exceeds the available context size"), OpenAI's and vLLM's
/// "maximum context length".
fn past_context(exchange: &Exchange) -> bool {
    if !matches!(exchange.status, 400 | 413) {
        return false;
    }
    let Ok(value) = serde_json::from_slice::<Value>(&exchange.body) else {
        return false;
    };
    let Some(error) = value.get("error") else {
        return false;
    };
    let said = [
        error_message(&value),
        json_str(error, "type"),
        json_str(error, "code"),
    ];
    let past = said.into_iter().flatten().any(|text| {
        let text = text.to_ascii_lowercase();
        [
            "exceed_context_size",
            "context_length_exceeded",
            "context size",
            "context length",
            "context window",
        ]
        .iter()
        .any(|phrase| text.contains(phrase))
    });
    past
}

impl Robot for OpenAiRobot {
    fn name(&self) -> &str {
        "openai"
    }

    fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
        Robot::answer(self, &Request::new(user, text))
    }

    fn answer(&self, request: &Request<'_>) -> Result<String, RobotError> {
        let conversation = &request.conversation;
        // One budget for the first request and any retry with fewer turns.
        let own = deadline_after(Instant::now(), self.client.timeout());
        let deadline = request.deadline.map_or(own, |asked| asked.min(own));
        // The history lock is taken and released here, before the network calls.
        let mut turns = self.history.recent(conversation);
        loop {
            let exchange = self.send(&turns, request.text, deadline)?;
            if !past_context(&exchange) {
                let reply = self.read_answer(&exchange)?;
                self.history.keep_newest(conversation, turns.len());
                self.history.push(conversation, request.text, &reply);
                return Ok(reply);
            }
            if turns.is_empty() {
                return Err(RobotError::Rejected(TOO_LONG.to_owned()));
            }
            // Drop the older half of the turns (all of them when one is left) and try again,
            // if the budget allows. The history is cut only once an answer shows what fits.
            turns.drain(..turns.len().div_ceil(2));
            if deadline.saturating_duration_since(Instant::now()) < Duration::from_millis(50) {
                return Err(self
                    .client
                    .status_error(&exchange, PATH, Some("past the context")));
            }
            log::debug!(
                "openai: the request was past the model's context; retrying with {} turns",
                turns.len()
            );
        }
    }

    fn end_conversation(&self, conversation: &Conversation) {
        self.history.forget(conversation);
    }

    fn report(&self) -> RobotReport {
        RobotReport {
            memory_bytes: self.history.bytes() as u64,
            links: Vec::new(),
        }
    }

    fn never_blocks(&self) -> bool {
        false
    }
}
