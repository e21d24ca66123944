//! Gates in a JSON file, replaced atomically (write a temp file beside it, fsync, rename).

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::{GateState, StoreError};

/// A gates file.
pub struct FileStore {
    path: PathBuf,
}

// === impl FileStore ===

impl FileStore {
    /// A store at `path` (nothing is read yet).
    pub fn new(path: PathBuf) -> FileStore {
        FileStore { path }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::File {
            path: self.path.clone(),
            source,
        }
    }

    /// The stored state; an absent file is an empty state, an unreadable one an error (a
    /// restart must not silently close every gate).
    pub async fn load(&self) -> Result<GateState, StoreError> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Decode {
                location: self.path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(GateState::default()),
            Err(e) => Err(self.io()(e)),
        }
    }

    /// Replaces the file with `state`.
    pub async fn save(&self, state: &GateState) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(state).map_err(StoreError::Encode)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "gates".to_string());
        let tmp = self
            .path
            .with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let mut f = tokio::fs::File::create(&tmp).await.map_err(self.io())?;
        f.write_all(&bytes).await.map_err(self.io())?;
        f.sync_all().await.map_err(self.io())?;
        drop(f);
        tokio::fs::rename(&tmp, &self.path)
            .await
            .map_err(self.io())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gates::GateKey;

    #[tokio::test]
    async fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("gates.json"));
        assert_eq!(store.load().await.unwrap(), GateState::default());
        let mut state = GateState::default();
        state.gates.insert(GateKey {
            namespace: "test".into(),
            name: "podinfo".into(),
            gate: "shared".into(),
        });
        store.save(&state).await.unwrap();
        assert_eq!(store.load().await.unwrap(), state);
        // only the file itself is left behind
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["gates.json"]);
        std::fs::write(dir.path().join("gates.json"), "garbage").unwrap();
        assert!(matches!(store.load().await, Err(StoreError::Decode { .. })));
    }
}
