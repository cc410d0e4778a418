//! The OpenAI-compatible chat robot: `POST {base}/chat/completions`, as served by Ollama,
//! llama.cpp's `llama-server`, vLLM and hosted OpenAI-compatible APIs.
//!
//! Each request carries the optional system prompt, this user's last few turns (kept by
//! [`History`], bounded) and the new text; the reply is `choices[0].message.content`.

use std::fmt;

use serde_json::{json, Value};

use super::history::History;
use super::{join_url, json_str, scrub, Client, Exchange, HttpOptions, DEFAULT_OPENAI_URL};
use crate::robot::{Robot, RobotError};

/// The API path, as shown in error messages.
const PATH: &str = "/chat/completions";

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
    /// Turns (a message and its reply) kept per user and sent with each request; 0 keeps none.
    pub history_turns: usize,
    /// Users whose history is kept; beyond that the least recently used is forgotten.
    pub max_users: usize,
    /// The most tokens the model may answer with (`max_tokens`).
    pub max_tokens: u32,
}

impl Default for OpenAiConfig {
    /// A local Ollama server (`http://localhost:11434/v1`), model `llama3.2`, no key, no system
    /// prompt, 8 turns for each of up to 10,000 users, 512 tokens.
    fn default() -> Self {
        OpenAiConfig {
            base_url: DEFAULT_OPENAI_URL.to_owned(),
            key: None,
            model: "llama3.2".to_owned(),
            system_prompt: None,
            history_turns: 8,
            max_users: 10_000,
            max_tokens: 512,
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
            .field("max_users", &self.max_users)
            .field("max_tokens", &self.max_tokens)
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
            history: History::new(config.history_turns, config.max_users),
            config,
        }
    }

    /// The request body: system prompt, the user's recent turns, the new text.
    fn request_body(&self, user: &str, text: &str) -> String {
        let mut messages = Vec::new();
        if let Some(prompt) = &self.config.system_prompt {
            messages.push(json!({ "role": "system", "content": prompt }));
        }
        for turn in self.history.recent(user) {
            messages.push(json!({ "role": "user", "content": turn.user }));
            messages.push(json!({ "role": "assistant", "content": turn.reply }));
        }
        messages.push(json!({ "role": "user", "content": text }));
        json!({
            "model": self.config.model,
            "messages": messages,
            "max_tokens": self.config.max_tokens,
            "stream": false,
        })
        .to_string()
    }

    /// The reply (or error) for an answer.
    fn answer(&self, exchange: &Exchange) -> Result<String, RobotError> {
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

impl Robot for OpenAiRobot {
    fn name(&self) -> &str {
        "openai"
    }

    fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
        // The history lock is taken and released here, before the network call.
        let body = self.request_body(user, text);
        let bearer = self.config.key.as_ref().map(|key| format!("Bearer {key}"));
        let exchange = self.client.exchange(|limits| {
            let mut request = limits
                .apply(self.client.agent().post(&self.url))
                .header("Content-Type", "application/json");
            if let Some(bearer) = &bearer {
                request = request.header("Authorization", bearer);
            }
            request.send(body.as_bytes())
        })?;
        let reply = self.answer(&exchange)?;
        self.history.push(user, text, &reply);
        Ok(reply)
    }

    fn never_blocks(&self) -> bool {
        false
    }
}
