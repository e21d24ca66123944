//! InfluxDB 2 (`POST /api/v2/query`, Flux, annotated CSV back): the `_value` of the first
//! record, which must be a `double`, as Flagger reads it. Token and org from the Secret's
//! `token` and `org`. Unlike Flagger, a query that returns no rows is no data, not 0, and an
//! error table is an error, not 0.

use serde_json::json;

use super::http;
use crate::{MetricsProvider, ProviderError, Query};

/// One InfluxDB.
pub struct InfluxProvider {
    client: reqwest::Client,
    address: String,
    token: Option<String>,
    org: String,
}

/// Splits one CSV line, honouring double quotes.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// The first record's `_value` from an annotated CSV answer.
pub fn first_value(csv: &str) -> Result<f64, ProviderError> {
    let mut datatypes: Vec<String> = Vec::new();
    let mut header: Option<Vec<String>> = None;
    for line in csv.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            datatypes.clear();
            header = None;
            continue;
        }
        let f = fields(line);
        match f.first().map(String::as_str) {
            Some("#datatype") => datatypes = f,
            Some(s) if s.starts_with('#') => {}
            _ if header.is_none() => header = Some(f),
            _ => {
                let h = header.as_deref().unwrap_or_default();
                if let Some(i) = h.iter().position(|c| c == "error") {
                    let msg = f.get(i).cloned().unwrap_or_default();
                    return Err(ProviderError::BadQuery(format!("InfluxDB: {msg}")));
                }
                let Some(i) = h.iter().position(|c| c == "_value") else {
                    return Err(ProviderError::Decode(
                        "InfluxDB answered a table without _value".into(),
                    ));
                };
                let raw = f.get(i).cloned().unwrap_or_default();
                if raw.is_empty() {
                    return Err(ProviderError::NoValues);
                }
                let ty = datatypes.get(i).map(String::as_str).unwrap_or("double");
                if ty != "double" {
                    return Err(ProviderError::Decode(format!(
                        "InfluxDB _value is a {ty}, not a double; convert it in the query (toFloat())"
                    )));
                }
                return raw
                    .parse()
                    .map_err(|e| ProviderError::Decode(format!("InfluxDB _value {raw:?}: {e}")));
            }
        }
    }
    Err(ProviderError::NoValues)
}

impl InfluxProvider {
    /// A provider for `address` (required); with a Secret, its `token` and `org` are required.
    pub fn new(
        address: &str,
        secret: Option<&std::collections::BTreeMap<String, Vec<u8>>>,
    ) -> Result<Self, ProviderError> {
        let (token, org) = match secret {
            None => (None, String::new()),
            Some(_) => (
                Some(http::required(secret, "influxdb", "token")?),
                http::required(secret, "influxdb", "org")?,
            ),
        };
        Ok(InfluxProvider {
            client: http::client(false)?,
            address: address.trim_end_matches('/').to_string(),
            token,
            org,
        })
    }

    async fn flux(&self, q: &str) -> Result<String, ProviderError> {
        let mut req = self
            .client
            .post(format!("{}/api/v2/query", self.address))
            .query(&[("org", &self.org)])
            .header("Accept", "application/csv")
            .json(&json!({
                "query": q,
                "type": "flux",
                "dialect": {"annotations": ["datatype", "group", "default"], "delimiter": ",", "header": true},
            }));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Token {t}"));
        }
        let body = http::send("InfluxDB", req).await?;
        Ok(String::from_utf8_lossy(&body).to_string())
    }
}

#[async_trait::async_trait]
impl MetricsProvider for InfluxProvider {
    async fn query(&self, query: &Query) -> Result<f64, ProviderError> {
        let Query::Text(q) = query else {
            return Err(ProviderError::Config("InfluxDB answers Flux".into()));
        };
        first_value(&self.flux(q).await?)
    }

    async fn health(&self) -> Result<(), ProviderError> {
        self.flux("from(bucket: \"default\") |> range(start: -2h)")
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotated_csv() {
        let csv = "#datatype,string,long,dateTime:RFC3339,double,string\n#group,false,false,true,false,true\n#default,_result,,,,\n,result,table,_time,_value,_field\n,,0,2020-02-18T10:34:08Z,1.4,f\n,,0,2020-02-18T22:08:44Z,6.6,f\n";
        assert_eq!(first_value(csv), Ok(1.4));
        assert_eq!(first_value(""), Err(ProviderError::NoValues));
        let long = csv
            .replace("dateTime:RFC3339,double", "dateTime:RFC3339,long")
            .replace("1.4", "3");
        assert!(matches!(first_value(&long), Err(ProviderError::Decode(_))));
        let err = "#datatype,string,string\n#group,true,true\n#default,,\n,error,reference\n,\"compilation failed, bad\",\n";
        assert!(
            matches!(first_value(err), Err(ProviderError::BadQuery(m)) if m.contains("compilation failed, bad"))
        );
    }
}
