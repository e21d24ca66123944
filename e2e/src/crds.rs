//! Installing CRDs (ours and the meshes') and waiting until the API server serves them.

use std::{path::PathBuf, time::Duration};

use k8s_openapi::{
    api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::wait::{await_condition, conditions},
};
use serde_json::Value;

use crate::{Error, Result, controlplane::poll, io, kube_err, repo_root, shared_dir};

/// The CRD files installed into every plane: Siskin's, Flagger's original (so `flagger.app`
/// manifests are validated exactly as on a Flagger cluster), Gateway API (standard channel,
/// with its admission policy), Istio, Linkerd, one SMI variant (linkerd-smi: v1alpha1 and
/// v1alpha2, plus smi-sdk-go's v1alpha3 added as a served version: no upstream CRD serves
/// v1alpha3 next to v1alpha1, and Flagger writes all three) and Consul's config entries.
fn files() -> Result<Vec<PathBuf>> {
    let crds = shared_dir().join("crds");
    if !crds.is_dir() {
        return Err(Error::Setup(format!(
            "{} is missing (set SISKIN_SHARED to the shared/ folder)",
            crds.display()
        )));
    }
    let mut files = vec![
        repo_root().join("config/crd/siskin.dev.yaml"),
        crds.join("flagger/crd.yaml"),
        crds.join("istio/crd-all.gen.yaml"),
        crds.join("linkerd/install_crds.golden.yaml"),
        crds.join("smi/linkerd-smi_trafficsplit-crd.yaml"),
    ];
    for dir in ["gateway-api", "consul"] {
        let Ok(entries) = std::fs::read_dir(crds.join(dir)) else {
            continue;
        };
        let mut more: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(
            more.into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "yaml")),
        );
    }
    Ok(files)
}

/// Adds smi-sdk-go's `v1alpha3` TrafficSplit schema to linkerd-smi's CRD as a served,
/// non-storage version (the schemas differ only by v1alpha3's optional `matches`).
fn add_smi_v1alpha3(crd: &mut Value, crds: &std::path::Path) -> Result<()> {
    let file = crds.join("smi/smi-sdk-go_split.yaml");
    let text = std::fs::read_to_string(&file).map_err(io(format!("read {}", file.display())))?;
    let sdk: Value = serde_yaml::from_str(&text)
        .map_err(|e| Error::Setup(format!("{}: {e}", file.display())))?;
    let mut v3 = sdk["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == "v1alpha3"))
        .cloned()
        .ok_or_else(|| Error::Setup(format!("{}: no v1alpha3", file.display())))?;
    v3["served"] = Value::Bool(true);
    v3["storage"] = Value::Bool(false);
    if let Some(versions) = crd["spec"]["versions"].as_array_mut() {
        versions.retain(|v| v["name"] != "v1alpha3");
        versions.push(v3);
    }
    Ok(())
}

/// Server-side applies every document, then waits for each CRD to be Established and served.
pub(crate) async fn install(client: &Client) -> Result<()> {
    let pp = PatchParams::apply("siskin-e2e").force();
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut installed = Vec::new();
    for file in files()? {
        let text =
            std::fs::read_to_string(&file).map_err(io(format!("read {}", file.display())))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| Error::Setup(format!("{}: {e}", file.display())))?;
            if value.is_null() {
                continue;
            }
            let mut value = value;
            if file.ends_with("smi/linkerd-smi_trafficsplit-crd.yaml") {
                add_smi_v1alpha3(&mut value, &shared_dir().join("crds"))?;
            }
            let kind = value["kind"].as_str().unwrap_or_default().to_string();
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let what = format!("apply {kind} {name} from {}", file.display());
            match kind.as_str() {
                "CustomResourceDefinition" => {
                    let crd = crd_api
                        .patch(&name, &pp, &Patch::Apply(&value))
                        .await
                        .map_err(kube_err(what))?;
                    installed.push(crd);
                }
                "ValidatingAdmissionPolicy" => {
                    let api: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
                    api.patch(&name, &pp, &Patch::Apply(&value))
                        .await
                        .map_err(kube_err(what))?;
                }
                "ValidatingAdmissionPolicyBinding" => {
                    let api: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
                    api.patch(&name, &pp, &Patch::Apply(&value))
                        .await
                        .map_err(kube_err(what))?;
                }
                other => {
                    return Err(Error::Setup(format!(
                        "{}: unexpected kind {other:?}",
                        file.display()
                    )));
                }
            }
        }
    }
    for crd in &installed {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let established = await_condition(crd_api.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(60), established)
            .await
            .map_err(|_| Error::Timeout {
                what: format!("CRD {name} Established"),
                secs: 60,
                saw: "not established".into(),
            })?
            .map_err(|e| Error::Setup(format!("watch CRD {name}: {e}")))?;
        // Established is not enough: wait until discovery lists it, as envtest does.
        for v in crd.spec.versions.iter().filter(|v| v.served) {
            let gv = format!("{}/{}", crd.spec.group, v.name);
            let plural = crd.spec.names.plural.clone();
            poll(
                Duration::from_secs(30),
                &format!("{plural} in discovery of {gv}"),
                || {
                    let (client, gv, plural) = (client.clone(), gv.clone(), plural.clone());
                    async move {
                        let list = client.list_api_group_resources(&gv).await.ok()?;
                        list.resources
                            .iter()
                            .any(|r| r.name == plural)
                            .then_some(())
                    }
                },
            )
            .await?;
        }
    }
    eprintln!("[e2e] {} CRDs installed and served", installed.len());
    Ok(())
}
