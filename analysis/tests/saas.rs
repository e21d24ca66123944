//! The SaaS metric providers against stand-in servers on loopback. These are stand-ins, not the
//! real services (Datadog, New Relic, Dynatrace, Splunk, AWS and Google cannot be reached from
//! here): each one checks every request the way the real API does — path, authentication
//! headers (for AWS, the Signature Version 4 recomputed from the request; for Google, the
//! JWT's RS256 signature verified with the service account's public key), query encoding, body
//! shape — answers as the real API answers (shapes from the providers' API references and
//! Flagger's tests), and refuses anything else, so a provider that passes asked correctly.
//! The external metrics API with `spec.provider.address` is asked of that server directly; its
//! stand-in plays a metrics adapter (KEDA's, Datadog's cluster agent) answering
//! `external.metrics.k8s.io/v1beta1` as the Kubernetes API defines it.
//! Graphite and InfluxDB are open-source but not packaged here; the same kind of stand-in
//! checks their HTTP APIs.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, extract::Request, response::IntoResponse};
use base64::Engine;
use siskin_analysis::{
    MetricsProvider, ProviderError, Query,
    providers::{
        cloudwatch::{CloudWatchProvider, hmac},
        datadog::DatadogProvider,
        dynatrace::DynatraceProvider,
        externalmetrics::ExternalMetricsProvider,
        graphite::GraphiteProvider,
        influxdb::InfluxProvider,
        newrelic::NewRelicProvider,
        splunk::SplunkProvider,
        stackdriver::StackdriverProvider,
    },
};

/// What a stand-in saw, for asserts after the call.
#[derive(Clone, Debug, Default)]
struct Seen {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

type Answer = (u16, &'static str, String);

/// A stand-in at `http://127.0.0.1:<port>` answering with `f`; every request is recorded.
async fn stand_in(
    f: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (f, log) = (Arc::new(f), seen.clone());
    let app = axum::Router::new().fallback(move |req: Request| {
        let (f, log) = (f.clone(), log.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let s = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: form(parts.uri.query().unwrap_or_default()),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                    .collect(),
                body: body.to_vec(),
            };
            let (status, ct, text) = f(&s);
            log.lock().unwrap().push(s);
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [(axum::http::header::CONTENT_TYPE, ct)],
                Bytes::from(text),
            )
                .into_response()
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, seen)
}

/// A decoded `application/x-www-form-urlencoded` string.
fn form(q: &str) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && i + 2 < b.len()
                && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).to_string()
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn text(q: &str) -> Query {
    Query::Text(q.to_string())
}

const MINUTE: Duration = Duration::from_secs(60);

fn json(s: serde_json::Value) -> Answer {
    (200, "application/json", s.to_string())
}

#[tokio::test]
async fn datadog_asks_ten_intervals_with_both_keys_and_reads_the_oldest_point() {
    let (url, seen) = stand_in(|s| {
        if s.headers.get("dd-api-key").map(String::as_str) != Some("api")
            || s.headers.get("dd-application-key").map(String::as_str) != Some("app")
        {
            return (403, "application/json", r#"{"errors":["Forbidden"]}"#.into());
        }
        match s.path.as_str() {
            "/api/v1/validate" => json(serde_json::json!({"valid": true})),
            "/api/v1/query" if s.query["query"] == "avg:latency{app:podinfo}" => {
                json(serde_json::json!({"status": "ok", "res_type": "time_series",
                    "series": [{"metric": "latency", "pointlist": [[1_700_000_000_000_i64, 42.5], [1_700_000_060_000_i64, 99.0]]}]}))
            }
            "/api/v1/query" => json(serde_json::json!({"status": "ok", "series": []})),
            _ => (404, "text/plain", "not found".into()),
        }
    })
    .await;
    let keys = secret(&[
        ("datadog_api_key", "api"),
        ("datadog_application_key", "app"),
    ]);
    let p = DatadogProvider::new(Some(&url), Some(&keys), MINUTE).unwrap();
    assert_eq!(p.query(&text("avg:latency{app:podinfo}")).await, Ok(42.5));
    let s = seen.lock().unwrap().last().cloned().unwrap();
    let (from, to): (i64, i64) = (
        s.query["from"].parse().unwrap(),
        s.query["to"].parse().unwrap(),
    );
    assert_eq!(to - from, 600, "ten metric intervals, in seconds");
    assert_eq!(
        p.query(&text("avg:nothing")).await,
        Err(ProviderError::NoValues)
    );
    p.health().await.unwrap();
    let wrong = secret(&[
        ("datadog_api_key", "api"),
        ("datadog_application_key", "nope"),
    ]);
    let p = DatadogProvider::new(Some(&url), Some(&wrong), MINUTE).unwrap();
    assert!(matches!(
        p.query(&text("avg:latency{app:podinfo}")).await,
        Err(ProviderError::Unauthorized { status: 403, .. })
    ));
    let e = DatadogProvider::new(
        Some(&url),
        Some(&secret(&[("datadog_api_key", "x")])),
        MINUTE,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("datadog_application_key"), "{e}");
}

#[tokio::test]
async fn new_relic_appends_the_window_and_reads_result() {
    let (url, seen) = stand_in(|s| {
        if s.headers.get("x-query-key").map(String::as_str) != Some("qk") {
            return (401, "application/json", r#"{"error":"unauthorized"}"#.into());
        }
        if s.path != "/v1/accounts/1234/query" {
            return (404, "text/plain", String::new());
        }
        match s.query["nrql"].as_str() {
            "SELECT percentage(count(*), WHERE error IS true) FROM Transaction SINCE 60 seconds ago" => {
                json(serde_json::json!({"results": [{"result": 1.5}]}))
            }
            q if q.starts_with("SELECT * FROM Metric") => json(serde_json::json!({"results": [{"events": []}]})),
            _ => json(serde_json::json!({"results": []})),
        }
    })
    .await;
    let keys = secret(&[
        ("newrelic_account_id", "1234"),
        ("newrelic_query_key", "qk"),
    ]);
    let p = NewRelicProvider::new(Some(&url), Some(&keys), MINUTE).unwrap();
    assert_eq!(
        p.query(&text(
            "SELECT percentage(count(*), WHERE error IS true) FROM Transaction"
        ))
        .await,
        Ok(1.5)
    );
    assert_eq!(
        p.query(&text("SELECT x FROM y")).await,
        Err(ProviderError::NoValues)
    );
    p.health().await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn graphite_sends_the_target_as_json_with_basic_auth_and_reads_the_last_point() {
    let (url, _seen) = stand_in(|s| {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("graph:ite")
        );
        if s.headers.get("authorization") != Some(&auth) {
            return (401, "text/plain", "Unauthorized".into());
        }
        if s.path != "/render" || s.query.get("format").map(String::as_str) != Some("json") {
            return (400, "text/plain", "bad request".into());
        }
        match s.query["target"].as_str() {
            "summarize(errors.podinfo, \"1min\", \"sum\")" => (200, "application/json",
                r#"[{"target":"errors","datapoints":[[null,1700000000],[1.0,1700000060],[2.5,1700000120],[null,1700000180]]}]"#.into()),
            _ => (200, "application/json", "[]".into()),
        }
    })
    .await;
    let keys = secret(&[("username", "graph"), ("password", "ite")]);
    let p = GraphiteProvider::new(&url, false, Some(&keys)).unwrap();
    assert_eq!(
        p.query(&text(
            "target=summarize(errors.podinfo, \"1min\", \"sum\")&from=-10min"
        ))
        .await,
        Ok(2.5)
    );
    assert_eq!(
        p.query(&text("target=none")).await,
        Err(ProviderError::NoValues)
    );
    p.health().await.unwrap();
}

#[tokio::test]
async fn dynatrace_sends_the_selector_with_an_api_token() {
    let (url, seen) = stand_in(|s| {
        if s.headers.get("authorization").map(String::as_str) != Some("Api-Token dt0c01.x") {
            return (401, "application/json", r#"{"error":{"code":401}}"#.into());
        }
        match s.path.as_str() {
            "/api/v2/metrics" if s.query["pageSize"] == "1" => {
                json(serde_json::json!({"totalCount": 1, "metrics": []}))
            }
            "/api/v2/metrics/query" if s.query["resolution"] == "Inf" => json(serde_json::json!({
                "totalCount": 1, "nextPageKey": null,
                "result": [{"metricId": s.query["metricSelector"], "data": [
                    {"dimensions": ["A"], "timestamps": [1], "values": [7.0]},
                    {"dimensions": ["B"], "timestamps": [1], "values": [3.25]}]}]})),
            _ => (400, "application/json", r#"{"error":{"code":400}}"#.into()),
        }
    })
    .await;
    let keys = secret(&[("dynatrace_token", "dt0c01.x")]);
    let p = DynatraceProvider::new(&url, Some(&keys), MINUTE).unwrap();
    assert_eq!(
        p.query(&text("builtin:service.response.time")).await,
        Ok(3.25)
    );
    let s = seen.lock().unwrap().last().cloned().unwrap();
    let (from, to): (i64, i64) = (
        s.query["from"].parse().unwrap(),
        s.query["to"].parse().unwrap(),
    );
    assert_eq!(to - from, 600_000, "ten metric intervals, in milliseconds");
    p.health().await.unwrap();
}

#[tokio::test]
async fn influxdb_posts_flux_with_a_token_and_reads_the_first_double() {
    let (url, _seen) = stand_in(|s| {
        if s.headers.get("authorization").map(String::as_str) != Some("Token tk") {
            return (401, "application/json", r#"{"code":"unauthorized","message":"unauthorized access"}"#.into());
        }
        let body: serde_json::Value = serde_json::from_slice(&s.body).unwrap_or_default();
        if s.method != "POST" || s.path != "/api/v2/query" || s.query.get("org").map(String::as_str) != Some("acme")
            || body["type"] != "flux" || body["dialect"]["header"] != true
        {
            return (400, "application/json", r#"{"code":"invalid","message":"bad request"}"#.into());
        }
        let csv = if body["query"].as_str().unwrap_or_default().contains("errors") {
            "#datatype,string,long,dateTime:RFC3339,double\n#group,false,false,false,false\n#default,_result,,,\n,result,table,_time,_value\n,,0,2026-12-01T00:00:00Z,0.75\n,,0,2026-12-01T00:01:00Z,9\n"
        } else {
            ""
        };
        (200, "text/csv; charset=utf-8", csv.into())
    })
    .await;
    let keys = secret(&[("token", "tk"), ("org", "acme")]);
    let p = InfluxProvider::new(&url, Some(&keys)).unwrap();
    assert_eq!(
        p.query(&text("from(bucket: \"app\") |> range(start: -1m) |> filter(fn: (r) => r._measurement == \"errors\")"))
            .await,
        Ok(0.75)
    );
    assert_eq!(
        p.query(&text("from(bucket: \"app\") |> range(start: -1m)"))
            .await,
        Err(ProviderError::NoValues),
        "no rows is no data (Flagger says 0)"
    );
    p.health().await.unwrap();
    let wrong = secret(&[("token", "nope"), ("org", "acme")]);
    let p = InfluxProvider::new(&url, Some(&wrong)).unwrap();
    assert!(matches!(
        p.query(&text("x")).await,
        Err(ProviderError::Unauthorized { status: 401, .. })
    ));
}

#[tokio::test]
async fn splunk_runs_signalflow_over_server_sent_events() {
    let (url, seen) = stand_in(|s| {
        if s.headers.get("x-sf-token").map(String::as_str) != Some("sf") {
            return (401, "application/json", r#"{"message":"unauthorized"}"#.into());
        }
        if s.path == "/v2/metric" {
            return json(serde_json::json!({"count": 1, "results": []}));
        }
        if s.method != "POST" || s.path != "/v2/signalflow/execute"
            || s.query.get("immediate").map(String::as_str) != Some("true")
            || !s.headers.get("content-type").is_some_and(|c| c.starts_with("text/plain"))
        {
            return (400, "application/json", r#"{"message":"bad request"}"#.into());
        }
        let program = String::from_utf8_lossy(&s.body).to_string();
        let start = "event: control-message\ndata: {\"event\":\"STREAM_START\",\"timestampMs\":1}\n\nevent: control-message\ndata: {\"event\":\"JOB_START\",\"handle\":\"D1\",\"timestampMs\":2}\n\nevent: metadata\ndata: {\"tsId\":\"AAA\",\"properties\":{}}\n\n";
        let end = "event: control-message\ndata: {\"event\":\"END_OF_CHANNEL\",\"timestampMs\":9}\n\n";
        let data = if program.contains("two") {
            "event: data\ndata: {\"logicalTimestampMs\":3,\"data\":[{\"tsId\":\"AAA\",\"value\":1.0},{\"tsId\":\"BBB\",\"value\":2.0}]}\n\n"
        } else {
            "event: data\ndata: {\"logicalTimestampMs\":3,\"data\":[{\"tsId\":\"AAA\",\"value\":4.0}]}\n\nevent: data\ndata: {\"logicalTimestampMs\":4,\"data\":[{\"tsId\":\"AAA\",\"value\":null}]}\n\nevent: data\ndata: {\"logicalTimestampMs\":5,\"data\":[{\"tsId\":\"AAA\",\"value\":5.5}]}\n\n"
        };
        (200, "text/event-stream", format!("{start}{data}{end}"))
    })
    .await;
    let keys = secret(&[("sf_token_key", "sf")]);
    let p = SplunkProvider::new(&url, Some(&keys), MINUTE).unwrap();
    assert_eq!(
        p.query(&text("data('errors').mean().publish()")).await,
        Ok(5.5)
    );
    let s = seen.lock().unwrap().last().cloned().unwrap();
    let (start, stop): (i64, i64) = (
        s.query["start"].parse().unwrap(),
        s.query["stop"].parse().unwrap(),
    );
    assert_eq!(stop - start, 600_000);
    assert_eq!(
        String::from_utf8_lossy(&s.body),
        "data('errors').mean().publish()"
    );
    assert_eq!(
        p.query(&text("data('two').publish()")).await,
        Err(ProviderError::MultipleValues(2))
    );
    p.health().await.unwrap();
}

/// SigV4 as AWS checks it, written again here from the specification (not the provider's own
/// `sign`): the canonical request from what arrived, the signing key from the known secret.
fn sigv4_valid(s: &Seen, secret_key: &str) -> Result<(), String> {
    let auth = s.headers.get("authorization").ok_or("no Authorization")?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or("not SigV4")?;
    let mut parts = BTreeMap::new();
    for p in rest.split(", ") {
        let (k, v) = p.split_once('=').ok_or("malformed")?;
        parts.insert(k, v);
    }
    let scope: Vec<&str> = parts["Credential"].split('/').collect();
    let (date, region, service) = (scope[1], scope[2], scope[3]);
    if service != "monitoring" {
        return Err(format!("service {service}"));
    }
    let signed = parts["SignedHeaders"];
    let canonical_headers: String = signed
        .split(';')
        .map(|h| {
            format!(
                "{h}:{}\n",
                s.headers.get(h).map(|v| v.trim()).unwrap_or_default()
            )
        })
        .collect();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    use sha2::Digest;
    let canonical = format!(
        "{}\n{}\n\n{canonical_headers}\n{signed}\n{}",
        s.method,
        s.path,
        hex(&sha2::Sha256::digest(&s.body))
    );
    let amz_date = &s.headers["x-amz-date"];
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex(&sha2::Sha256::digest(canonical.as_bytes()))
    );
    let mut k = hmac(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        k = hmac(&k, part.as_bytes());
    }
    let want = hex(&hmac(&k, to_sign.as_bytes()));
    if want == parts["Signature"] {
        Ok(())
    } else {
        Err("signature does not match".into())
    }
}

#[tokio::test]
async fn cloudwatch_signs_get_metric_data_with_sigv4_and_reads_the_newest_point() {
    let (url, seen) = stand_in(|s| {
        if let Err(e) = sigv4_valid(s, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY") {
            return (403, "application/x-amz-json-1.0", format!(r#"{{"__type":"SignatureDoesNotMatch","message":"{e}"}}"#));
        }
        if s.headers.get("x-amz-target").map(String::as_str) != Some("GraniteServiceVersion20100801.GetMetricData")
            || s.headers.get("content-type").map(String::as_str) != Some("application/x-amz-json-1.0")
        {
            return (400, "application/x-amz-json-1.0", r#"{"__type":"UnknownOperationException"}"#.into());
        }
        let body: serde_json::Value = serde_json::from_slice(&s.body).unwrap_or_default();
        let queries = body["MetricDataQueries"].as_array().cloned().unwrap_or_default();
        if queries.is_empty() {
            return (400, "application/x-amz-json-1.0", r#"{"__type":"InvalidParameterValueException","message":"The parameter MetricDataQueries is required."}"#.into());
        }
        if queries[0]["Id"] != "m1" || queries[0]["MetricStat"]["Metric"]["Namespace"] != "AWS/ApplicationELB"
            || body["MaxDatapoints"] != 20
            || body["EndTime"].as_i64().unwrap_or(0) - body["StartTime"].as_i64().unwrap_or(0) != 600
        {
            return (400, "application/x-amz-json-1.0", r#"{"__type":"InvalidParameterValueException"}"#.into());
        }
        json(serde_json::json!({"MetricDataResults": [{"Id": "m1", "Label": "5xx",
            "Timestamps": [1_700_000_300, 1_700_000_000], "Values": [0.42, 0.37], "StatusCode": "Complete"}], "Messages": []}))
    })
    .await;
    let keys = secret(&[
        ("aws_access_key_id", "AKIDEXAMPLE"),
        (
            "aws_secret_access_key",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
    ]);
    let p = CloudWatchProvider::new(Some("eu-west-1"), Some(&url), Some(&keys), MINUTE).unwrap();
    // Flagger's examples write the keys in lower case; the JSON protocol wants them as AWS does.
    let q = r#"[{"id": "m1", "metricStat": {"metric": {"namespace": "AWS/ApplicationELB", "metricName": "HTTPCode_Target_5XX_Count", "dimensions": [{"name": "LoadBalancer", "value": "app/x/1"}]}, "period": 60, "stat": "Sum"}}]"#;
    assert_eq!(p.query(&text(q)).await, Ok(0.42));
    p.health().await.unwrap();
    assert!(seen.lock().unwrap().len() >= 2);
    let wrong = secret(&[
        ("aws_access_key_id", "AKIDEXAMPLE"),
        ("aws_secret_access_key", "wrong"),
    ]);
    let p = CloudWatchProvider::new(Some("eu-west-1"), Some(&url), Some(&wrong), MINUTE).unwrap();
    assert!(matches!(
        p.query(&text(q)).await,
        Err(ProviderError::Unauthorized { status: 403, .. })
    ));
    assert!(matches!(
        p.query(&text("not json")).await,
        Err(ProviderError::BadQuery(_))
    ));
    let e = CloudWatchProvider::new(None, Some(&url), Some(&keys), MINUTE)
        .err()
        .unwrap();
    assert!(e.to_string().contains("spec.provider.region"), "{e}");
}

fn rsa_key() -> (String, Vec<u8>) {
    let dir = tempfile_dir();
    let key = dir.join("key.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let public = std::process::Command::new("openssl")
        .args(["rsa", "-RSAPublicKey_out", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(public.status.success());
    (std::fs::read_to_string(&key).unwrap(), public.stdout)
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "siskin-saas-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn stackdriver_exchanges_a_signed_jwt_for_a_token_and_runs_mql() {
    let (pem, public) = rsa_key();
    let public = Arc::new(public);
    let (url, _seen) = stand_in(move |s| {
        match s.path.as_str() {
            "/token" => {
                if s.query.is_empty() && s.method == "POST" {
                    let f = form(&String::from_utf8_lossy(&s.body));
                    if f.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
                        return (400, "application/json", r#"{"error":"unsupported_grant_type"}"#.into());
                    }
                    let jwt = f.get("assertion").cloned().unwrap_or_default();
                    let parts: Vec<&str> = jwt.split('.').collect();
                    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                    let verified = parts.len() == 3
                        && ring::signature::UnparsedPublicKey::new(
                            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                            public.as_slice(),
                        )
                        .verify(
                            format!("{}.{}", parts[0], parts[1]).as_bytes(),
                            &b64.decode(parts[2]).unwrap_or_default(),
                        )
                        .is_ok();
                    let claims: serde_json::Value = serde_json::from_slice(
                        &b64.decode(parts.get(1).unwrap_or(&"")).unwrap_or_default(),
                    )
                    .unwrap_or_default();
                    if !verified
                        || claims["iss"] != "siskin@proj.iam.gserviceaccount.com"
                        || claims["scope"] != "https://www.googleapis.com/auth/monitoring.read"
                        || !claims["aud"].as_str().unwrap_or_default().ends_with("/token")
                    {
                        return (400, "application/json", r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#.into());
                    }
                    return json(serde_json::json!({"access_token": "ya29.token", "expires_in": 3599, "token_type": "Bearer"}));
                }
                (405, "text/plain", String::new())
            }
            "/v3/projects/proj/timeSeries:query" => {
                if s.headers.get("authorization").map(String::as_str) != Some("Bearer ya29.token") {
                    return (401, "application/json", r#"{"error":{"code":401,"status":"UNAUTHENTICATED"}}"#.into());
                }
                let body: serde_json::Value = serde_json::from_slice(&s.body).unwrap_or_default();
                match body["query"].as_str() {
                    Some("") | None => (400, "application/json", r#"{"error":{"code":400,"status":"INVALID_ARGUMENT"}}"#.into()),
                    Some(_) => json(serde_json::json!({
                        "timeSeriesDescriptor": {"pointDescriptors": [{"key": "value", "valueType": "DOUBLE"}]},
                        "timeSeriesData": [{"labelValues": [], "pointData": [
                            {"values": [{"doubleValue": 12.5}], "timeInterval": {"endTime": "2026-12-01T00:01:00Z"}},
                            {"values": [{"doubleValue": 99.0}], "timeInterval": {"endTime": "2026-12-01T00:00:00Z"}}]}]})),
                }
            }
            _ => (404, "text/plain", String::new()),
        }
    })
    .await;
    let key = serde_json::json!({"type": "service_account", "project_id": "proj",
        "private_key_id": "k1", "private_key": pem,
        "client_email": "siskin@proj.iam.gserviceaccount.com", "token_uri": format!("{url}/token")});
    let keys = secret(&[("project", "proj"), ("serviceAccountKey", &key.to_string())]);
    let p = StackdriverProvider::new(Some(&url), Some(&keys)).unwrap();
    assert_eq!(
        p.query(&text("fetch k8s_container | metric 'x' | within 1m"))
            .await,
        Ok(12.5)
    );
    p.health().await.unwrap();
    // Another key: the stand-in cannot verify its signature, as Google could not.
    let (other, _) = rsa_key();
    let key = serde_json::json!({"private_key": other, "client_email": "siskin@proj.iam.gserviceaccount.com",
        "token_uri": format!("{url}/token")});
    let keys = secret(&[("project", "proj"), ("serviceAccountKey", &key.to_string())]);
    let p = StackdriverProvider::new(Some(&url), Some(&keys)).unwrap();
    assert!(matches!(
        p.query(&text("fetch x")).await,
        Err(ProviderError::Unauthorized { .. })
    ));
}

#[tokio::test]
async fn external_metrics_at_an_address_are_asked_with_the_bearer_token() {
    let (url, seen) = stand_in(|s| {
        if s.headers.get("authorization").map(String::as_str) != Some("Bearer adapter-token") {
            return (401, "application/json", r#"{"kind":"Status","code":401}"#.into());
        }
        match (s.path.as_str(), s.query.get("labelSelector").map(String::as_str)) {
            ("/apis/external.metrics.k8s.io/v1beta1/namespaces/test/queue_depth", Some("app=podinfo")) => json(serde_json::json!({
                "kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1",
                "metadata": {},
                "items": [{"metricName": "queue_depth", "metricLabels": {"app": "podinfo"},
                           "timestamp": "2026-12-01T00:00:00Z", "value": "1500m"}]
            })),
            ("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/empty", None) => json(serde_json::json!({
                "kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1",
                "metadata": {}, "items": []
            })),
            _ => (404, "application/json", r#"{"kind":"Status","code":404}"#.into()),
        }
    })
    .await;
    let token = secret(&[("token", "adapter-token")]);
    let p = ExternalMetricsProvider::at(&url, false, Some(&token)).unwrap();
    assert_eq!(
        p.query(&text("test/queue_depth?labelSelector=app%3Dpodinfo"))
            .await,
        Ok(1.5)
    );
    assert_eq!(p.query(&text("empty")).await, Err(ProviderError::NoValues));
    assert_eq!(
        p.query(&text("test/unknown")).await,
        Err(ProviderError::NoValues)
    );
    assert_eq!(seen.lock().unwrap()[0].method, "GET");
    let anonymous = ExternalMetricsProvider::at(&url, false, None).unwrap();
    assert!(matches!(
        anonymous.query(&text("test/queue_depth")).await,
        Err(ProviderError::Unauthorized { status: 401, .. })
    ));
}
