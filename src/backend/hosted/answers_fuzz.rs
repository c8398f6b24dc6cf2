//! Provider answers fuzzed: arbitrary JSON, and real answers (PROVIDERS.md, and the
//! loopback servers of the tests) mutated. Whatever a provider sends, reading it never
//! panics, an error says what was wrong in bounded text, and a well-formed answer still
//! reads as what it says.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};
use url::Url;

use super::fields::Fields;
use super::http::provider_message;
use super::prediction::{self, ListOutput};
use super::runner::{Output, Poll, tqdm_progress};
use super::{Model, fal, replicate, text, together, url_at, wavespeed};
use crate::backend::{BackendError, Resolution};

/// The longest error a provider's answer may cause: answers are cut (`short`) to 300
/// characters and provider messages to 500; the rest of an error is ours.
const MAX_ERROR: usize = 1000;

/// The answers the element reads, by who sends them and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    ReplicateUpload,
    ReplicateCreate,
    ReplicatePoll,
    CogPoll,
    FalToken,
    FalUpload,
    FalCreate,
    FalStatus,
    FalResult,
    WavespeedTicket,
    WavespeedCreate,
    WavespeedPoll,
    TogetherCreate,
    TogetherPoll,
}

const ANSWERS: [Answer; 14] = [
    Answer::ReplicateUpload,
    Answer::ReplicateCreate,
    Answer::ReplicatePoll,
    Answer::CogPoll,
    Answer::FalToken,
    Answer::FalUpload,
    Answer::FalCreate,
    Answer::FalStatus,
    Answer::FalResult,
    Answer::WavespeedTicket,
    Answer::WavespeedCreate,
    Answer::WavespeedPoll,
    Answer::TogetherCreate,
    Answer::TogetherPoll,
];

/// What an answer read as, where it reads as a job's state.
#[derive(Debug, PartialEq)]
enum Read {
    Pending(Option<f64>),
    Done(String),
    Failed(String),
    /// fal: the job completed; its result is fetched next.
    Completed,
    /// Any other answer (a job, an upload), as its parts that matter.
    Other(String),
}

fn model() -> Model {
    Model {
        base: Url::parse("https://api.example.com/").unwrap(),
        id: "owner/model".into(),
        fields: Fields::WAN27,
        resolution: Resolution::default(),
    }
}

fn poll(poll: Poll) -> Read {
    match poll {
        Poll::Pending { progress } => Read::Pending(progress),
        Poll::Done(output) => Read::Done(output_text(output)),
        Poll::Failed(message) => Read::Failed(message),
    }
}

fn url_text(url: &Option<Url>) -> String {
    url.as_ref().map_or_else(|| "-".into(), Url::to_string)
}

fn output_text(output: Output) -> String {
    match output {
        Output::Url(url) => url.to_string(),
        Output::Inline(data) => format!("{} bytes", data.len()),
    }
}

/// Reads `body` as the parser of `answer` does.
fn read(answer: Answer, body: &Value) -> Result<Read, BackendError> {
    Ok(match answer {
        Answer::ReplicateUpload | Answer::FalUpload => {
            let pointer = match answer {
                Answer::FalUpload => "/access_url",
                _ => "/urls/get",
            };
            Read::Other(text(body, pointer)?.to_owned())
        }
        Answer::ReplicateCreate => {
            let job = replicate::Replicate { model: model() }.create_answer(body)?;
            Read::Other(format!("{} {} {}", job.id, job.poll, url_text(&job.cancel)))
        }
        Answer::ReplicatePoll => poll(prediction::poll(body, ListOutput::First)?),
        Answer::CogPoll => poll(prediction::poll(body, ListOutput::Last)?),
        Answer::FalToken => {
            let (base, _) = fal::token_answer(body)?;
            Read::Other(base.to_string())
        }
        Answer::FalCreate => {
            let job = fal::create_answer(body)?;
            Read::Other(format!(
                "{} {} {} {}",
                job.id,
                job.poll,
                url_text(&job.result),
                url_text(&job.cancel)
            ))
        }
        Answer::FalStatus => fal::status_answer(body)?.map_or(Read::Completed, poll),
        Answer::FalResult => Read::Done(output_text(fal::result_answer(body)?)),
        Answer::WavespeedTicket => {
            let upload = wavespeed::ticket_answer(body.clone())?;
            Read::Other(format!(
                "{} {} {:?} {}",
                upload.method, upload.url, upload.headers, upload.download_url
            ))
        }
        Answer::WavespeedCreate => {
            let job = wavespeed::Wavespeed { model: model() }.create_answer(body.clone())?;
            Read::Other(format!("{} {}", job.id, job.poll))
        }
        Answer::WavespeedPoll => poll(wavespeed::poll_answer(body.clone())?),
        Answer::TogetherCreate => {
            let job = together::Together { model: model() }.create_answer(body)?;
            Read::Other(format!("{} {}", job.id, job.poll))
        }
        Answer::TogetherPoll => poll(together::poll_answer(body)?),
    })
}

/// Reads `body` as `answer`: whatever it holds, the parser returns, a failed job says
/// why, and an error says what was wrong in bounded text.
fn check(answer: Answer, body: &Value) -> Result<Read, TestCaseError> {
    match read(answer, body) {
        Ok(read) => {
            if let Read::Failed(message) = &read {
                prop_assert!(
                    !message.trim().is_empty(),
                    "{answer:?}: no reason in {body}"
                );
                prop_assert!(
                    message.chars().count() <= MAX_ERROR,
                    "{answer:?}: a reason of {} characters",
                    message.chars().count()
                );
            }
            Ok(read)
        }
        Err(error) => {
            let detail = match &error {
                BackendError::Protocol(detail)
                | BackendError::Http {
                    message: detail, ..
                } => detail,
                other => return Err(TestCaseError::fail(format!("{answer:?}: {other:?}"))),
            };
            prop_assert!(!detail.trim().is_empty(), "{answer:?}: {error:?}");
            let shown = error.to_string();
            prop_assert!(
                shown.chars().count() <= MAX_ERROR,
                "{answer:?}: an error of {} characters: {}...",
                shown.chars().count(),
                shown.chars().take(200).collect::<String>()
            );
            Ok(Read::Other(shown))
        }
    }
}

/// Real answers of each kind, from PROVIDERS.md and the loopback servers, and what they
/// read as.
fn real(answer: Answer) -> Vec<(Value, Read)> {
    let api = "https://api.example.com";
    let clip = "https://cdn.example.com/out/clip.mp4";
    let done = || Read::Done(clip.into());
    let prediction = |status: &str, output: Value, error: Value, logs: &str| {
        json!({
            "id": "p1", "model": "wan-video/wan-2.7-videoedit", "version": "v",
            "status": status, "input": {"prompt": "snow"}, "output": output,
            "error": error, "logs": logs, "data_removed": false,
            "created_at": "2025-01-01T00:00:00.000Z",
            "urls": {"get": format!("{api}/v1/predictions/p1"),
                     "cancel": format!("{api}/v1/predictions/p1/cancel"),
                     "stream": "https://stream.example.com/p1"},
            "metrics": {"predict_time": 12.5},
        })
    };
    let predictions = |list: ListOutput| {
        let (first, last) = ("https://cdn.example.com/a.mp4", clip);
        vec![
            (
                prediction("starting", Value::Null, Value::Null, ""),
                Read::Pending(None),
            ),
            (
                prediction(
                    "processing",
                    Value::Null,
                    Value::Null,
                    "loading\n 42%|####      | 21/50 [00:10<00:12]\n",
                ),
                Read::Pending(Some(0.42)),
            ),
            (
                prediction("succeeded", json!(clip), Value::Null, "100%|#| 50/50\n"),
                done(),
            ),
            (
                prediction("succeeded", json!([first, last]), Value::Null, ""),
                Read::Done(match list {
                    ListOutput::First => first.into(),
                    ListOutput::Last => last.into(),
                }),
            ),
            (
                prediction(
                    "succeeded",
                    json!("data:video/mp4;base64,AAECAw=="),
                    Value::Null,
                    "",
                ),
                Read::Done("4 bytes".into()),
            ),
            (
                prediction("failed", Value::Null, json!("CUDA out of memory"), ""),
                Read::Failed("CUDA out of memory".into()),
            ),
            (
                prediction("canceled", Value::Null, Value::Null, ""),
                Read::Failed("prediction canceled".into()),
            ),
            (
                prediction("aborted", Value::Null, Value::Null, ""),
                Read::Failed("prediction aborted".into()),
            ),
        ]
    };
    let wrap = |data: Value| json!({"code": 200, "message": "success", "data": data});
    let wavespeed_state = |status: &str, outputs: Value, error: &str| {
        wrap(
            json!({"id": "w1", "status": status, "outputs": outputs, "error": error,
                    "timings": {"inference": 5000}, "has_nsfw_contents": [false]}),
        )
    };
    match answer {
        Answer::ReplicateUpload => vec![(
            json!({"id": "f1", "name": "window.mp4", "content_type": "video/mp4", "size": 1024,
                   "checksums": {"sha256": "abc"}, "metadata": {},
                   "urls": {"get": format!("{api}/v1/files/f1")},
                   "created_at": "2025-01-01T00:00:00Z", "expires_at": "2025-01-02T00:00:00Z"}),
            Read::Other(format!("{api}/v1/files/f1")),
        )],
        Answer::ReplicateCreate => vec![
            (
                prediction("starting", Value::Null, Value::Null, ""),
                Read::Other(format!(
                    "p1 {api}/v1/predictions/p1 {api}/v1/predictions/p1/cancel"
                )),
            ),
            // A proxy that strips the URLs: Replicate's own paths.
            (
                json!({"id": "p2", "status": "starting"}),
                Read::Other(format!(
                    "p2 {api}/v1/predictions/p2 {api}/v1/predictions/p2/cancel"
                )),
            ),
        ],
        Answer::ReplicatePoll => predictions(ListOutput::First),
        Answer::CogPoll => predictions(ListOutput::Last),
        Answer::FalToken => vec![(
            json!({"token": "cdn-token", "token_type": "Bearer",
                   "base_url": "https://v3.fal.media", "expires_at": "2099-01-01T00:00:00Z"}),
            Read::Other("https://v3.fal.media/".into()),
        )],
        Answer::FalUpload => vec![(
            json!({"access_url": "https://v3.fal.media/files/x/window.mp4", "content_type": "video/mp4"}),
            Read::Other("https://v3.fal.media/files/x/window.mp4".into()),
        )],
        Answer::FalCreate => {
            let base = "https://queue.fal.run/fal-ai/wan/requests/r1";
            vec![(
                json!({"request_id": "r1", "status_url": format!("{base}/status"),
                       "response_url": base, "cancel_url": format!("{base}/cancel"),
                       "queue_position": 0}),
                Read::Other(format!("r1 {base}/status?logs=1 {base} {base}/cancel")),
            )]
        }
        Answer::FalStatus => vec![
            (
                json!({"status": "IN_QUEUE", "queue_position": 3, "response_url": "https://q/r1"}),
                Read::Pending(None),
            ),
            (
                json!({"status": "IN_PROGRESS", "logs": [
                    {"message": " 30%|###   | 3/10", "level": "INFO", "timestamp": "t"},
                    {"message": "still going", "level": "INFO"}]}),
                Read::Pending(Some(0.3)),
            ),
            (
                json!({"status": "COMPLETED", "logs": [], "metrics": {"inference_time": 9.1}}),
                Read::Completed,
            ),
            (
                json!({"status": "COMPLETED", "error": "Request was cancelled",
                       "error_type": "model_error"}),
                Read::Failed("Request was cancelled".into()),
            ),
        ],
        Answer::FalResult => vec![
            (
                json!({"video": {"url": clip, "content_type": "video/mp4", "file_size": 1024},
                       "seed": 42}),
                done(),
            ),
            (json!({"video": clip}), done()),
            (json!({"videos": [{"url": clip}], "seed": 1}), done()),
        ],
        Answer::WavespeedTicket => vec![(
            wrap(json!({
                "download_url": "https://cdn.example.com/up/u1",
                "upload": {"method": "PUT", "url": "https://bucket.example.com/u1?sig=s",
                           "headers": {"Content-Type": "video/mp4"}},
            })),
            Read::Other(
                "PUT https://bucket.example.com/u1?sig=s [(\"content-type\", \"video/mp4\")] \
                 https://cdn.example.com/up/u1"
                    .into(),
            ),
        )],
        Answer::WavespeedCreate => vec![
            (
                wrap(json!({"id": "w1", "status": "created",
                            "urls": {"get": format!("{api}/api/v3/predictions/w1/result")}})),
                Read::Other(format!("w1 {api}/api/v3/predictions/w1/result")),
            ),
            (
                wrap(json!({"id": "w2", "status": "created"})),
                Read::Other(format!("w2 {api}/api/v3/predictions/w2/result")),
            ),
        ],
        Answer::WavespeedPoll => vec![
            (
                wavespeed_state("processing", json!([]), ""),
                Read::Pending(None),
            ),
            (wavespeed_state("completed", json!([clip]), ""), done()),
            (
                wavespeed_state("failed", json!([]), "out of credits"),
                Read::Failed("out of credits".into()),
            ),
            (
                wavespeed_state("cancelled", json!([]), ""),
                Read::Failed("prediction cancelled".into()),
            ),
        ],
        Answer::TogetherCreate => vec![(
            json!({"id": "t1", "object": "video", "status": "queued", "model": "m"}),
            Read::Other(format!("t1 {api}/v2/videos/t1")),
        )],
        Answer::TogetherPoll => vec![
            (
                json!({"id": "t1", "status": "pending"}),
                Read::Pending(None),
            ),
            (
                json!({"id": "t1", "status": "in_progress"}),
                Read::Pending(None),
            ),
            (
                json!({"id": "t1", "status": "completed",
                       "outputs": {"video_url": clip, "cost": 0.1}}),
                done(),
            ),
            (
                json!({"id": "t1", "status": "failed",
                       "error": {"code": "model_error", "message": "bad input"}}),
                Read::Failed("bad input".into()),
            ),
            (
                json!({"id": "t1", "status": "cancelled"}),
                Read::Failed("video job cancelled".into()),
            ),
        ],
    }
}

/// The keys and words the parsers look for, so that arbitrary answers reach past their
/// first check.
const WORDS: [&str; 44] = [
    "id",
    "status",
    "output",
    "outputs",
    "error",
    "logs",
    "message",
    "urls",
    "get",
    "cancel",
    "code",
    "data",
    "video",
    "videos",
    "url",
    "video_url",
    "request_id",
    "status_url",
    "response_url",
    "cancel_url",
    "token",
    "token_type",
    "base_url",
    "access_url",
    "upload",
    "method",
    "headers",
    "download_url",
    "0",
    "succeeded",
    "failed",
    "canceled",
    "cancelled",
    "aborted",
    "processing",
    "completed",
    "timeout",
    "COMPLETED",
    "IN_PROGRESS",
    "https://cdn.example.com/clip.mp4",
    "data:video/mp4;base64,AAEC",
    "data:video/mp4;base64,%%%",
    " 42%|####      | 21/50",
    "99999999999999999999999%|",
];

/// Strings providers could send: words the parsers know, empty, arbitrary unicode, huge,
/// tqdm-like, and data URIs.
fn strings() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&WORDS[..]).prop_map(str::to_owned),
        Just(String::new()),
        any::<String>(),
        ("\\PC{1,3}", 1..6000usize).prop_map(|(unit, count)| unit.repeat(count)),
        "\\PC{0,12}[0-9]{0,25}%\\|[# ]{0,10}\\|? ?[0-9]{0,3}/?[0-9]{0,3}",
        "data:[a-z/]{0,10}(;base64)?,[A-Za-z0-9+/= \n]{0,40}",
        "(https?|ftp|file|data|javascript):(//)?\\PC{0,30}",
    ]
}

fn numbers() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(200),
            json!(200.0),
            json!(429),
            json!(65_736),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(f64::MAX),
            json!(f64::MIN_POSITIVE),
            json!(-0.0),
        ]),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
    ]
}

fn keys() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&WORDS[..29]).prop_map(str::to_owned),
        1 => strings(),
    ]
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        numbers(),
        strings().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Remove,
    Replace(Value),
}

fn mutations() -> impl Strategy<Value = Vec<(Index, Mutation)>> {
    let replacement = prop_oneof![
        strings().prop_map(Value::from),
        numbers(),
        Just(Value::Null),
        Just(json!([])),
        Just(json!({})),
        arbitrary_json(),
    ];
    let mutation = prop_oneof![
        Just(Mutation::Remove),
        replacement.prop_map(Mutation::Replace),
    ];
    prop::collection::vec((any::<Index>(), mutation), 1..5)
}

/// The JSON pointers of every value in `value`, itself included.
fn pointers(value: &Value) -> Vec<String> {
    fn walk(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(fields) => {
                for (key, field) in fields {
                    let key = key.replace('~', "~0").replace('/', "~1");
                    walk(field, format!("{at}/{key}"), out);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
        out.push(at);
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out
}

fn mutate(mut value: Value, mutations: &[(Index, Mutation)]) -> Value {
    for (index, mutation) in mutations {
        let pointer = index.get(&pointers(&value)).clone();
        match mutation {
            Mutation::Replace(new) => *value.pointer_mut(&pointer).unwrap() = new.clone(),
            Mutation::Remove => {
                let Some((parent, key)) = pointer.rsplit_once('/') else {
                    continue;
                };
                match value.pointer_mut(parent).unwrap() {
                    Value::Object(fields) => {
                        fields.remove(&key.replace("~1", "/").replace("~0", "~"));
                    }
                    Value::Array(items) => {
                        items.remove(key.parse::<usize>().unwrap());
                    }
                    _ => unreachable!("a pointer's parent holds it"),
                }
            }
        }
    }
    value
}

/// A real answer of any kind, and what it reads as.
fn real_answers() -> impl Strategy<Value = (Answer, Value, Read)> {
    let all: Vec<(Answer, usize)> = ANSWERS
        .iter()
        .flat_map(|&answer| (0..real(answer).len()).map(move |i| (answer, i)))
        .collect();
    prop::sample::select(all).prop_map(|(answer, i)| {
        let (body, read) = real(answer).swap_remove(i);
        (answer, body, read)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_answers_never_panic(
        answer in prop::sample::select(&ANSWERS[..]),
        body in arbitrary_json(),
    ) {
        check(answer, &body)?;
    }

    #[test]
    fn mutated_answers_never_panic(
        (answer, body, _) in real_answers(),
        mutations in mutations(),
    ) {
        check(answer, &mutate(body, &mutations))?;
    }

    /// Fields a provider adds over time are ignored.
    #[test]
    fn unknown_fields_change_nothing(
        (answer, body, expected) in real_answers(),
        extra in prop::collection::vec(("[a-z_]{1,12}", arbitrary_json()), 1..4),
    ) {
        let mut body = body;
        let Value::Object(fields) = &mut body else { unreachable!("answers are objects") };
        for (key, value) in extra {
            if !WORDS.contains(&key.as_str()) {
                fields.insert(key, value);
            }
        }
        prop_assert_eq!(check(answer, &body)?, expected);
    }

    #[test]
    fn provider_messages_stay_short(
        body in prop_oneof![
            any::<String>(),
            strings(),
            arbitrary_json().prop_map(|v| v.to_string()),
            (real_answers(), mutations()).prop_map(|((_, body, _), m)| mutate(body, &m).to_string()),
        ],
    ) {
        let message = provider_message(&body);
        prop_assert!(message.chars().count() <= MAX_ERROR, "{} characters", message.len());
    }

    #[test]
    fn output_values_parse_or_say_why(value in strings()) {
        match Output::parse(&value) {
            Ok(Output::Url(_)) => {}
            Ok(Output::Inline(_)) => prop_assert!(value.starts_with("data:")),
            Err(error) => {
                let shown = error.to_string();
                prop_assert!(shown.chars().count() <= MAX_ERROR, "{} characters", shown.len());
            }
        }
    }

    #[test]
    fn tqdm_progress_is_a_fraction_or_none(logs in prop_oneof![any::<String>(), strings()]) {
        if let Some(progress) = tqdm_progress(&logs) {
            prop_assert!((0.0..=1.0).contains(&progress), "{progress}");
        }
    }

    #[test]
    fn url_errors_stay_short(value in strings()) {
        let body = json!({"url": value});
        if let Err(error) = url_at(&body, "/url") {
            let shown = error.to_string();
            prop_assert!(shown.chars().count() <= MAX_ERROR, "{} characters", shown.len());
        }
    }
}

#[test]
fn real_answers_read_as_they_say() {
    for answer in ANSWERS {
        for (body, expected) in real(answer) {
            assert_eq!(read(answer, &body).unwrap(), expected, "{answer:?}: {body}");
        }
    }
}

#[test]
fn errors_in_answers_say_what_was_wrong() {
    let error = |answer, body: Value| read(answer, &body).unwrap_err().to_string();
    assert_eq!(
        error(
            Answer::WavespeedPoll,
            json!({"code": 429, "message": "slow down"})
        ),
        "HTTP 429: slow down"
    );
    // A code that is no HTTP status is not taken for one (65736 would wrap to 200).
    assert_eq!(
        error(
            Answer::WavespeedPoll,
            json!({"code": 65_736, "message": "odd"})
        ),
        "unexpected answer: code 65736: odd"
    );
    assert!(
        read(
            Answer::WavespeedPoll,
            &json!({"code": 200.0, "data": {"status": "created"}})
        )
        .is_ok()
    );
    assert_eq!(
        error(Answer::WavespeedCreate, json!({"code": 400, "message": ""})),
        "HTTP 400: {\"code\":400,\"message\":\"\"}"
    );
    let huge = "x".repeat(100_000);
    let shown = error(Answer::FalResult, json!({"video": {"uri": huge}}));
    assert!(
        shown.starts_with("unexpected answer: no video in the result: {\"video\":{\"uri\":\"xxx")
            && shown.len() < MAX_ERROR,
        "{shown}"
    );
    let shown = error(
        Answer::WavespeedTicket,
        json!({"data": {"upload": {"url": "https://b.example.com/u", "method": format!("P T{huge}")}}}),
    );
    assert!(shown.starts_with("unexpected answer: upload method \"P T") && shown.len() < MAX_ERROR);
    // An empty reason is no reason: the status says what happened.
    assert_eq!(
        read(
            Answer::ReplicatePoll,
            &json!({"status": "failed", "error": ""})
        )
        .unwrap(),
        Read::Failed("prediction failed".into())
    );
    assert_eq!(
        read(
            Answer::TogetherPoll,
            &json!({"status": "failed", "error": {"message": " "}})
        )
        .unwrap(),
        Read::Failed("video job failed".into())
    );
}
