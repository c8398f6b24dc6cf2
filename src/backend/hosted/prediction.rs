//! Predictions as Replicate's API and a Cog server both describe them: `status`, `output`,
//! `error` and `logs`. Replicate runs its models under Cog, so the two bodies are one
//! format; only how a prediction is reached differs.

use serde_json::Value;

use super::http::{Call, Http};
use super::runner::{Job, Output, Poll, tqdm_progress};
use super::{error_text, field, text};
use crate::backend::BackendError;

/// Which item of a list output is the clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOutput {
    /// Replicate's edit models return one URL; models that return several put it first.
    First,
    /// A Cog server that streams outputs appends as it goes: the file comes last.
    Last,
}

/// Where the prediction in `body` stands.
pub fn poll(body: &Value, list: ListOutput) -> Result<Poll, BackendError> {
    Ok(match text(body, "/status")? {
        "succeeded" => Poll::Done(Output::parse(output(body, list)?)?),
        status @ ("failed" | "canceled" | "aborted") => Poll::Failed(
            field(body, "/error")
                .map(error_text)
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| format!("prediction {status}")),
        ),
        // A Cog server answers a PUT of a running prediction (sent again after a lost
        // connection) with its state too.
        _ => Poll::Pending {
            progress: field(body, "/logs")
                .and_then(Value::as_str)
                .and_then(tqdm_progress),
        },
    })
}

/// Asks for the prediction to stop: a POST to its cancel URL.
pub async fn cancel(http: &Http, job: &Job) -> Result<(), BackendError> {
    if let Some(url) = &job.cancel {
        http.send(&Call::post(url.clone())).await?;
    }
    Ok(())
}

/// The clip's output: a string, or the one `list` picks from a list.
fn output(body: &Value, list: ListOutput) -> Result<&str, BackendError> {
    let mut items = match field(body, "/output") {
        Some(Value::String(output)) => return Ok(output),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str),
        _ => {
            return Err(BackendError::Protocol(
                "the prediction succeeded without an output".into(),
            ));
        }
    };
    let (item, what) = match list {
        ListOutput::First => (items.next(), "URL"),
        ListOutput::Last => (items.next_back(), "file"),
    };
    item.ok_or_else(|| {
        BackendError::Protocol(format!("the prediction's output list holds no {what}"))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn done(body: Value, list: ListOutput) -> String {
        match poll(&body, list).unwrap() {
            Poll::Done(Output::Url(url)) => url.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn list_outputs_give_the_item_each_server_puts_the_clip_in() {
        let body = json!({"status": "succeeded", "output": ["https://a/1.mp4", "https://a/2.mp4"]});
        assert_eq!(done(body.clone(), ListOutput::First), "https://a/1.mp4");
        assert_eq!(done(body, ListOutput::Last), "https://a/2.mp4");
        let body = json!({"status": "succeeded", "output": "https://a/0.mp4"});
        assert_eq!(done(body, ListOutput::Last), "https://a/0.mp4");
        let empty = json!({"status": "succeeded", "output": [1]});
        assert_eq!(
            poll(&empty, ListOutput::First).unwrap_err().to_string(),
            "unexpected answer: the prediction's output list holds no URL"
        );
    }

    #[test]
    fn ended_predictions_say_why() {
        let failed = |body: Value| match poll(&body, ListOutput::First).unwrap() {
            Poll::Failed(message) => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            failed(json!({"status": "failed", "error": "CUDA out of memory"})),
            "CUDA out of memory"
        );
        assert_eq!(failed(json!({"status": "canceled"})), "prediction canceled");
        assert_eq!(
            failed(json!({"status": "aborted", "error": null})),
            "prediction aborted"
        );
        let running = json!({"status": "processing", "logs": " 40%|####      | 4/10"});
        assert!(matches!(
            poll(&running, ListOutput::Last).unwrap(),
            Poll::Pending { progress: Some(p) } if p == 0.4
        ));
    }
}
