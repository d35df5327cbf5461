//! Error replies that echo the request (off unless [`crate::Emulator::echo_requests`] turns it on).
//!
//! Real servers and the proxies in front of them do this: a misconfigured gateway or a debugging
//! middleware puts the request line, its headers (`Authorization` included) and its body (a token
//! request's `client_secret` included) into the error text. The emulator can do the same so that tests
//! can check that csp-sync masks every secret such a reply carries back.

use serde_json::Value;

use crate::server::{Req, Resp};

/// The request as an echoing server would show it: request line, every header, the raw body.
fn echo_text(req: &Req) -> String {
    let headers: Vec<String> = req
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
        .collect();
    let query = if req.query.is_empty() {
        String::new()
    } else {
        format!("?{}", req.query)
    };
    format!(
        "[echo of {} {}{query}; headers: {}; body: {}]",
        req.method,
        req.path,
        headers.join("; "),
        String::from_utf8_lossy(&req.body)
    )
}

/// Message members of the services' error bodies (Graph `error.message`, identity platform
/// `error_description`, Partner Center `description`, Halo `message` / `Message` / `errorMessage`).
const MESSAGE_KEYS: &[&str] = &[
    "message",
    "Message",
    "error_description",
    "description",
    "errorMessage",
];

fn append_to_messages(v: &mut Value, echo: &str) -> bool {
    let mut done = false;
    if let Value::Object(map) = v {
        for key in MESSAGE_KEYS {
            if let Some(Value::String(s)) = map.get_mut(*key) {
                s.push(' ');
                s.push_str(echo);
                done = true;
            }
        }
        if let Some(inner) = map.get_mut("error") {
            done |= append_to_messages(inner, echo);
        }
    }
    done
}

/// `resp` with the request echoed into its error text, when it is an error.
pub(crate) fn echo(mut resp: Resp, req: &Req) -> Resp {
    if resp.status < 400 {
        return resp;
    }
    let echo = echo_text(req);
    let mut body = resp.body_json();
    if body.is_null() {
        let mut text = String::from_utf8_lossy(&resp.body).into_owned();
        text.push(' ');
        text.push_str(&echo);
        resp.body = text.into_bytes();
        return resp;
    }
    if !append_to_messages(&mut body, &echo)
        && let Value::Object(map) = &mut body
    {
        map.insert("message".into(), Value::String(echo));
    }
    resp.body = serde_json::to_vec(&body).unwrap_or_default();
    resp
}
