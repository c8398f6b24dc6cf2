//! Hosted backends: providers reached over HTTPS, and self-hosted Cog servers.
//!
//! Each provider module is a thin protocol adapter (`runner::Protocol`); the shared
//! runner encodes the window, creates and follows the job, downloads and decodes the
//! result, and cancels the job when the edit is dropped.

#[cfg(test)]
mod answers_fuzz;
mod cog;
mod endpoint;
mod fal;
mod fields;
mod fleet;
mod http;
pub mod media;
mod prediction;
mod replicate;
mod runner;
mod together;
mod wavespeed;

use std::sync::Arc;

use serde_json::{Map, Value};
use url::Url;

use self::fields::Fields;
use self::http::{Auth, Http};
use self::runner::{Hosted, Inputs, Profile, Protocol};
use crate::backend::{
    Backend, BackendConfig, BackendError, BackendKind, ConfigError, FrameCounts, Resolution,
};

pub(crate) use self::endpoint::redacted as redacted_endpoint;
pub use self::fleet::{Resolve, SystemResolver};
pub use self::http::Pacing;

/// Bounds on what a provider may send back, and on how long its requests may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest edited clip downloaded.
    pub max_output_bytes: u64,
    pub pacing: Pacing,
}

impl Default for Limits {
    /// 81 frames at 1080p in high quality H.264 stay far below 512 MiB.
    fn default() -> Self {
        Self {
            max_output_bytes: 512 * 1024 * 1024,
            pacing: Pacing::default(),
        }
    }
}

/// Jobs a hosted provider runs at once for one element; the provider's rate limits (429)
/// are the real bound.
const PROVIDER_CONCURRENCY: usize = 32;

/// Hosted Wan models take clips of 2 to 10 s; at 16 fps and 4n+1 frames that is 33 to 81
/// (Wan's own limit).
const HOSTED_FRAMES: FrameCounts = FrameCounts {
    min: 33,
    max: 81,
    four_n_plus_one: true,
};

/// What sets a provider apart before any request: its name, key, defaults, and the
/// inputs its models take.
#[derive(Debug, Clone, Copy)]
pub struct Provider {
    pub name: &'static str,
    /// The environment variable the provider's own tools read the key from.
    pub env: &'static str,
    pub auth_scheme: &'static str,
    pub endpoint: &'static str,
    pub model: Option<&'static str>,
    /// The inputs of a model, by its id.
    fields: fn(&str) -> Fields,
    /// Where uploads go, if not below the endpoint (fal). An overriding endpoint serves
    /// them too.
    storage: Option<&'static str>,
}

/// The hosted providers, in the order `backend=auto` tries their keys.
pub const PROVIDERS: [Provider; 4] = [
    replicate::PROVIDER,
    fal::PROVIDER,
    wavespeed::PROVIDER,
    together::PROVIDER,
];

impl Provider {
    pub fn of(kind: BackendKind) -> Option<Provider> {
        PROVIDERS.into_iter().find(|p| p.name == kind.nick())
    }

    /// The key from `api-key`, else from the provider's environment variable.
    fn auth(&self, config: &BackendConfig) -> Result<Auth, ConfigError> {
        if let Some(key) = api_key(config) {
            return authorization(self.auth_scheme, key, format!("api-key (or {})", self.env));
        }
        match std::env::var(self.env) {
            Ok(key) if !key.trim().is_empty() => authorization(
                self.auth_scheme,
                key.trim(),
                format!("the {} environment variable", self.env),
            ),
            _ => Err(ConfigError::MissingKey {
                backend: self.name,
                env: self.env,
            }),
        }
    }

    /// The model `config` names, else the provider's default, with the parameters the user
    /// set checked against its inputs.
    fn model(&self, config: &BackendConfig) -> Result<Model, ConfigError> {
        let id = match (&config.model, self.model) {
            (Some(model), _) if !model.is_empty() => model.clone(),
            (_, Some(model)) => model.to_owned(),
            (_, None) => {
                return Err(ConfigError::Invalid {
                    property: "model",
                    why: format!(
                        "backend={} has no default model: set model to the provider's id of a \
                         Wan video edit model",
                        self.name
                    ),
                });
            }
        };
        let base = self.endpoint(config)?;
        let fields = (self.fields)(&id);
        fields.check(self.name, &id, &config.params)?;
        Ok(Model {
            base,
            id,
            fields,
            resolution: config.resolution,
        })
    }

    fn endpoint(&self, config: &BackendConfig) -> Result<Url, ConfigError> {
        parse_endpoint(config.endpoint.as_deref().unwrap_or(self.endpoint))
    }

    fn storage(&self, config: &BackendConfig, base: &Url) -> Result<Url, ConfigError> {
        match (self.storage, &config.endpoint) {
            (Some(storage), None) => parse_endpoint(storage),
            _ => Ok(base.clone()),
        }
    }
}

/// `api-key`, less the whitespace a key read from a file or pasted from a terminal carries;
/// `None` if that leaves nothing.
fn api_key(config: &BackendConfig) -> Option<&str> {
    config
        .api_key
        .as_deref()
        .map(str::trim)
        .filter(|key| !key.is_empty())
}

fn authorization(scheme: &str, key: &str, source: String) -> Result<Auth, ConfigError> {
    Auth::new(scheme, key, source).map_err(|why| ConfigError::Invalid {
        property: "api-key",
        why,
    })
}

/// The model a provider runs the jobs on, and the inputs it takes.
struct Model {
    /// The provider's API (fal: its queue).
    base: Url,
    /// The provider's id of the model.
    id: String,
    fields: Fields,
    /// The resolution class asked for, where the model takes one.
    resolution: Resolution,
}

impl Model {
    /// `path` below the provider's API.
    fn url(&self, path: &str) -> Result<Url, BackendError> {
        join(&self.base, path)
    }

    /// The model's input object for a job.
    fn input(&self, inputs: &Inputs<'_>) -> Map<String, Value> {
        self.fields.input(inputs, self.resolution)
    }
}

/// Builds the hosted backend `kind` names.
pub fn create(
    kind: BackendKind,
    config: &BackendConfig,
    limits: Limits,
) -> Result<Arc<dyn Backend>, ConfigError> {
    let http = |endpoints: &[Url], auth| {
        Http::new(endpoints, auth, limits.max_output_bytes, limits.pacing).map_err(|why| {
            ConfigError::Invalid {
                property: "endpoint",
                why,
            }
        })
    };
    if kind == BackendKind::Cog {
        let urls = cog_endpoints(config)?;
        // Cog has no authentication of its own; a gateway in front of a fleet may.
        let key = api_key(config);
        endpoint::check_credentials(&urls, key.is_some(), config.allow_insecure_http)?;
        let auth = key
            .map(|key| authorization("Bearer", key, "api-key".into()))
            .transpose()?;
        let fields = Fields::DIFFUSERS;
        fields.check("cog", "cog", &config.params)?;
        let resolver = config
            .resolver
            .clone()
            .unwrap_or_else(|| Arc::new(SystemResolver));
        let fleet = fleet::Fleet::new(urls.clone(), resolver);
        let profile = Profile {
            name: "cog",
            // The user's own server runs Wan: any length Wan takes, not only what the
            // hosted models take.
            frame_counts: FrameCounts::WAN,
            reference_image: fields.reference_image.is_some(),
            // One prediction at a time on each server. How many servers a name stands for
            // is not known ahead: `max-in-flight` bounds the windows sent to them, and
            // windows past the servers free wait for one.
            max_concurrency: fleet.size().unwrap_or(usize::MAX),
        };
        let protocol = cog::Cog::new(fleet);
        return Ok(hosted(profile, protocol, http(&urls, auth)?, config));
    }

    let provider = Provider::of(kind).ok_or(ConfigError::NotBuilt(kind.nick()))?;
    let auth = provider.auth(config)?;
    let model = provider.model(config)?;
    let storage = provider.storage(config, &model.base)?;
    let endpoints = [model.base.clone(), storage.clone()];
    endpoint::check_credentials(&endpoints, true, config.allow_insecure_http)?;
    let http = http(&endpoints, Some(auth))?;
    let profile = Profile {
        name: provider.name,
        frame_counts: HOSTED_FRAMES,
        reference_image: model.fields.reference_image.is_some(),
        max_concurrency: PROVIDER_CONCURRENCY,
    };
    Ok(match kind {
        BackendKind::Replicate => hosted(profile, replicate::Replicate { model }, http, config),
        BackendKind::Fal => hosted(profile, fal::Fal { model, storage }, http, config),
        BackendKind::Wavespeed => hosted(profile, wavespeed::Wavespeed { model }, http, config),
        BackendKind::Together => hosted(profile, together::Together { model }, http, config),
        _ => return Err(ConfigError::NotBuilt(kind.nick())),
    })
}

fn hosted(
    profile: Profile,
    protocol: impl Protocol,
    http: Http,
    config: &BackendConfig,
) -> Arc<dyn Backend> {
    Arc::new(Hosted::new(profile, protocol, http, config.job_timeout))
}

/// The endpoints of a Cog fleet: each one server, or a name standing for several.
fn cog_endpoints(config: &BackendConfig) -> Result<Vec<Url>, ConfigError> {
    let endpoints = config.endpoint.as_deref().unwrap_or_default();
    let urls: Vec<Url> = endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(parse_endpoint)
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Err(ConfigError::Invalid {
            property: "endpoint",
            why: "backend=cog needs endpoint=http://host:5000 (several servers separated by \
                  commas, or a name that resolves to several addresses)"
                .into(),
        });
    }
    Ok(urls)
}

/// An endpoint as a base URL that joins relative paths below it.
fn parse_endpoint(text: &str) -> Result<Url, ConfigError> {
    let text = text.trim();
    let invalid = |why: String| ConfigError::Invalid {
        property: "endpoint",
        why,
    };
    let shown = redacted_endpoint(text);
    let mut url = Url::parse(text).map_err(|e| invalid(format!("{shown:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("{shown:?} is not an http(s) URL")));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// `path` below `base`, whether or not `base` ends with '/' (providers hand out bases
/// either way).
fn join(base: &Url, path: &str) -> Result<Url, BackendError> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base.join(path.trim_start_matches('/'))
        .map_err(|e| BackendError::Protocol(format!("cannot form a URL from {path:?}: {e}")))
}

/// The value at a JSON pointer, if present and not null.
fn field<'a>(body: &'a Value, pointer: &str) -> Option<&'a Value> {
    body.pointer(pointer).filter(|v| !v.is_null())
}

/// The string at a JSON pointer, which the protocol requires.
fn text<'a>(body: &'a Value, pointer: &str) -> Result<&'a str, BackendError> {
    field(body, pointer).and_then(Value::as_str).ok_or_else(|| {
        BackendError::Protocol(format!(
            "the answer has no {pointer} string: {}",
            short(body)
        ))
    })
}

/// A provider's error value as text, cut short: a string as it is, anything else as its
/// JSON without what may be a credential.
fn error_text(error: &Value) -> String {
    match error.as_str() {
        Some(text) => http::clip(text),
        None => short(error),
    }
}

/// The URL at a JSON pointer.
fn url_at(body: &Value, pointer: &str) -> Result<Url, BackendError> {
    let text = text(body, pointer)?;
    Url::parse(text)
        .map_err(|e| BackendError::Protocol(format!("{pointer} {}: {e}", short(&text.into()))))
}

/// A provider's answer, cut for an error message, with what may be a credential left out:
/// errors reach the bus and logs, and answers about uploads carry storage tokens and
/// signed URLs.
fn short(body: &Value) -> String {
    let text = redacted(body).to_string();
    match text.char_indices().nth(300) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

/// `body` with the values of credential-like keys, and the queries of URLs (where
/// signatures go), replaced.
fn redacted(body: &Value) -> Value {
    const SECRET_KEYS: [&str; 7] = [
        "token",
        "key",
        "secret",
        "signature",
        "password",
        "authorization",
        "credential",
    ];
    match body {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, value)| {
                    let name_lower = name.to_ascii_lowercase();
                    let value = if SECRET_KEYS.iter().any(|k| name_lower.contains(k)) {
                        Value::from("<redacted>")
                    } else {
                        redacted(value)
                    };
                    (name.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        Value::String(text) => match Url::parse(text) {
            Ok(mut url) if url.query().is_some() => {
                url.set_query(None);
                Value::from(format!("{url}?<redacted>"))
            }
            _ => body.clone(),
        },
        _ => body.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_in_errors_hold_no_credentials() {
        let answer = json!({
            "token": "s3cr3t-token",
            "token_type": "Bearer",
            "upload": {"url": "https://bucket.example/clip.mp4?X-Amz-Signature=abc123", "api_key": "k"},
            "files": ["https://cdn.example/a.mp4?sig=zzz"],
            "status": "ok"
        });
        let shown = short(&answer);
        for secret in ["s3cr3t-token", "Bearer", "abc123", "\"k\"", "zzz"] {
            assert!(!shown.contains(secret), "{secret} leaked into {shown}");
        }
        assert!(
            shown.contains("https://bucket.example/clip.mp4?<redacted>"),
            "{shown}"
        );
        assert!(shown.contains("\"status\":\"ok\""), "{shown}");
        let error = text(&answer, "/base_url").unwrap_err().to_string();
        assert!(!error.contains("s3cr3t-token"), "{error}");
    }

    #[test]
    fn a_lan_fleet_over_http_needs_no_permission_until_it_is_given_a_key() {
        let fleet = BackendConfig {
            kind: BackendKind::Cog,
            endpoint: Some("http://gpu1:5000,http://gpu2:5000".into()),
            ..Default::default()
        };
        let build = |config: &BackendConfig| create(BackendKind::Cog, config, Limits::default());
        assert!(build(&fleet).is_ok());
        let keyed = BackendConfig {
            api_key: Some("k".into()),
            ..fleet.clone()
        };
        assert!(matches!(
            build(&keyed).err(),
            Some(ConfigError::PlainHttp { host, .. }) if host == "gpu1:5000"
        ));
        let allowed = BackendConfig {
            allow_insecure_http: true,
            ..keyed
        };
        assert!(build(&allowed).is_ok());
    }

    #[test]
    fn a_fleet_named_by_a_name_is_bounded_by_max_in_flight_alone() {
        let windows_at_once = |endpoint: &str| {
            let config = BackendConfig {
                kind: BackendKind::Cog,
                endpoint: Some(endpoint.into()),
                ..Default::default()
            };
            let backend = create(BackendKind::Cog, &config, Limits::default()).unwrap();
            backend.capabilities(Resolution::P480).max_concurrency
        };
        assert_eq!(
            windows_at_once("http://10.0.0.1:5000,http://10.0.0.2:5000"),
            2
        );
        assert_eq!(
            windows_at_once("http://10.0.0.1:5000,http://cog.svc:5000"),
            usize::MAX
        );
    }

    #[test]
    fn endpoints_join_below_their_path() {
        let base = parse_endpoint("http://127.0.0.1:8080/proxy").unwrap();
        assert_eq!(
            join(&base, "/v1/predictions").unwrap().as_str(),
            "http://127.0.0.1:8080/proxy/v1/predictions"
        );
        let cdn = Url::parse("https://v3.fal.media/cdn").unwrap();
        assert_eq!(
            join(&cdn, "files/upload").unwrap().as_str(),
            "https://v3.fal.media/cdn/files/upload"
        );
        assert!(parse_endpoint("ftp://host").is_err());
        let error = parse_endpoint("http://u:s3cret@host:port")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"http://***@host:port\"") && !error.contains("s3cret"),
            "{error}"
        );
    }
}
