//! The providers that read the cluster (Keptn, the external metrics API) against a real
//! kube-apiserver, acting as the operator's ServiceAccount with the RBAC in `config/rbac/`.
//! Keptn's controllers are not run here: the test plays Keptn's metrics operator, completing
//! each Analysis Siskin creates as Keptn would (`status.state: Completed`, `status.pass`).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{
        ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    },
};
use serde_json::json;
use siskin_analysis::{
    ProviderError, ProviderSpec, Query,
    registry::{self, Extras},
};
use siskin_api::MetricsProviderType;
use siskin_e2e::{ControlPlane, apply_rbac, repo_root};

const NS: &str = "keptn-test";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metrics.keptn.sh", "v1beta1", kind),
        plural,
    )
}

/// Installs the Keptn CRDs, the operator's RBAC and the test namespace; the operator's client.
async fn setup(admin: &Client) {
    let pp = PatchParams::apply("siskin-test").force();
    let text =
        std::fs::read_to_string(repo_root().join("analysis/tests/data/keptn-crds.yaml")).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        let name = v["metadata"]["name"].as_str().unwrap().to_string();
        crds.patch(&name, &pp, &Patch::Apply(&v)).await.unwrap();
    }
    apply_rbac(admin).await.unwrap();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    Api::<Namespace>::all(admin.clone())
        .patch(NS, &pp, &Patch::Apply(&ns))
        .await
        .unwrap();
    // Served once a list answers.
    for kind in [("KeptnMetric", "keptnmetrics"), ("Analysis", "analyses")] {
        let api: Api<DynamicObject> =
            Api::namespaced_with(admin.clone(), NS, &resource(kind.0, kind.1));
        let mut tries = 0;
        while api.list(&ListParams::default()).await.is_err() {
            tries += 1;
            assert!(tries < 150, "{} never served", kind.1);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn provider(
    kind: MetricsProviderType,
    client: &Client,
) -> Box<dyn siskin_analysis::MetricsProvider> {
    let spec = ProviderSpec {
        kind,
        address: None,
        headers: Default::default(),
        insecure_skip_verify: false,
        region: None,
        secret: None,
    };
    registry::build(
        &spec,
        None,
        &Extras {
            window: Duration::from_secs(60),
            kube: Some(client.clone()),
        },
    )
    .unwrap()
}

fn text(q: &str) -> Query {
    Query::Text(q.to_string())
}

#[tokio::test]
async fn keptn_metrics_and_analyses_are_read_as_flagger_reads_them() {
    let plane = ControlPlane::shared();
    let admin = plane.client().await.unwrap();
    setup(&admin).await;
    let op = plane.operator_client().await.unwrap();
    let keptn = provider(MetricsProviderType::Keptn, &op);

    // A KeptnMetric: its status.value (the query is lower-cased, as in Flagger).
    let metrics: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), NS, &resource("KeptnMetric", "keptnmetrics"));
    let m: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metrics.keptn.sh/v1beta1", "kind": "KeptnMetric",
        "metadata": {"name": "response-time", "namespace": NS},
        "spec": {"provider": {"name": "prometheus"}, "query": "histogram_quantile(0.99, x)",
                 "fetchIntervalSeconds": 10},
    }))
    .unwrap();
    metrics.create(&PostParams::default(), &m).await.unwrap();
    assert_eq!(
        keptn
            .query(&text("keptnmetric/keptn-test/response-time"))
            .await,
        Err(ProviderError::NoValues),
        "a KeptnMetric Keptn has not measured yet has no value"
    );
    metrics
        .patch_status(
            "response-time",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"value": "0.42", "rawValue": "MC40Mg=="}})),
        )
        .await
        .unwrap();
    assert_eq!(
        keptn
            .query(&text("KeptnMetric/Keptn-Test/Response-Time"))
            .await,
        Ok(0.42)
    );
    let missing = keptn
        .query(&text("keptnmetric/keptn-test/nope"))
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("KeptnMetric keptn-test/nope"),
        "{missing}"
    );
    assert!(matches!(
        keptn.query(&text("keptnmetric/keptn-test")).await,
        Err(ProviderError::BadQuery(_))
    ));

    // Analyses: the test plays Keptn, passing an Analysis whose args say expect=pass.
    let analyses: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), NS, &resource("Analysis", "analyses"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keptn_controller = {
        let (analyses, seen) = (analyses.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                for a in analyses.list(&ListParams::default()).await.unwrap().items {
                    if a.data["status"]["state"] == "Completed" {
                        continue;
                    }
                    let name = a.metadata.name.clone().unwrap();
                    seen.lock().unwrap().push(a.data["spec"].clone());
                    let pass = a.data["spec"]["args"]["expect"] == "pass";
                    analyses
                        .patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": {"state": "Completed", "pass": pass,
                                "warning": false, "raw": "{}"}})),
                        )
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    assert_eq!(
        keptn
            .query(&text("analysis/keptn-test/slo/5m/expect=pass;stage=canary"))
            .await,
        Ok(1.0)
    );
    assert_eq!(
        keptn
            .query(&text("analysis/keptn-test/slo/2m/expect=fail"))
            .await,
        Ok(0.0)
    );
    keptn_controller.abort();
    let specs = seen.lock().unwrap().clone();
    assert_eq!(specs.len(), 2, "{specs:?}");
    assert_eq!(specs[0]["analysisDefinition"]["name"], "slo");
    assert_eq!(specs[0]["timeframe"]["recent"], "5m");
    assert_eq!(
        specs[0]["args"],
        json!({"expect": "pass", "stage": "canary"})
    );
    assert!(
        analyses
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "each Analysis is deleted after it is read"
    );

    // Nobody completes it: an error after Flagger's 10 s, and the Analysis is deleted.
    let started = std::time::Instant::now();
    let e = keptn
        .query(&text("analysis/keptn-test/slo"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("did not complete"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        analyses
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn external_metrics_are_asked_through_the_api_server() {
    let plane = ControlPlane::shared();
    let admin = plane.client().await.unwrap();
    setup(&admin).await;
    let op = plane.operator_client().await.unwrap();
    let ext = provider(MetricsProviderType::Externalmetrics, &op);
    // No metrics adapter is registered on this control plane: the API server answers 404 for
    // external.metrics.k8s.io, which is no data (never a pass); RBAC lets the operator ask.
    assert_eq!(
        ext.query(&text("keptn-test/queue_depth?labelSelector=app%3Dpodinfo"))
            .await,
        Err(ProviderError::NoValues)
    );
    assert!(matches!(
        ext.query(&text("a/b/c")).await,
        Err(ProviderError::BadQuery(_))
    ));
}
