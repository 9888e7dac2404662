//! A model's KV cache across its server's stops: before the proxy stops an idle server
//! (keep-alive, eviction, unload), each slot's cache is saved into the model's
//! [`ModelSpec::slot_cache`](super::ModelSpec::slot_cache) directory with llama-server's
//! slot save (`POST /slots/{id}?action=save`; the server runs with `--slot-save-path`
//! set to that directory); when the model starts again, the files are restored into the
//! new server before any request reaches it, then removed. A conversation that comes
//! back after an unload is then evaluated from where it stopped, not from its start.
//!
//! Best effort throughout: a save or restore that fails (an older server, a file from
//! another llama.cpp version, a corrupt one) is logged and skipped, never an error of
//! the stop or the start, and the whole save is bounded in time and in bytes.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use lmcpp_types::slots::SlotFileRequest;

use crate::client::Client;

/// The most bytes one model's saved slots may take; a slot that would pass it is not
/// kept.
pub const MAX_SLOT_CACHE_BYTES: u64 = 8 << 30;

/// How long saving (or restoring) a model's slots may take in all.
const SLOT_CACHE_WAIT: Duration = Duration::from_secs(120);

/// The file of slot `id`.
fn file_name(id: i64) -> String {
    format!("slot-{id}.bin")
}

/// The slot id of a file [`file_name`] named.
fn slot_of(name: &str) -> Option<u32> {
    name.strip_prefix("slot-")?
        .strip_suffix(".bin")?
        .parse()
        .ok()
}

/// Saves every slot that holds tokens into `dir` (replacing what was there), within
/// [`MAX_SLOT_CACHE_BYTES`] and [`SLOT_CACHE_WAIT`].
pub(crate) async fn save(client: &Client, dir: &Path, alias: &str) {
    let started = Instant::now();
    let saved = tokio::time::timeout(SLOT_CACHE_WAIT, save_all(client, dir, alias)).await;
    match saved {
        Ok(Some((slots, bytes))) => {
            tracing::info!(model = %alias, slots, bytes, ms = started.elapsed().as_millis() as u64, "saved the model's KV cache");
        }
        Ok(None) => {}
        Err(_) => {
            tracing::warn!(model = %alias, "saving the model's KV cache took too long; stopped it");
        }
    }
}

/// Creates `dir` (and its parents) if needed; whether it is there.
pub(crate) async fn ensure_dir(dir: &Path, alias: &str) -> bool {
    match tokio::fs::create_dir_all(dir).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(model = %alias, dir = %dir.display(), error = %e, "cannot create the KV cache directory");
            false
        }
    }
}

async fn save_all(client: &Client, dir: &Path, alias: &str) -> Option<(usize, u64)> {
    if !ensure_dir(dir, alias).await {
        return None;
    }
    clear(dir).await;
    let slots = match client.props().await {
        Ok(props) => props.total_slots,
        Err(e) => {
            tracing::warn!(model = %alias, error = %e, "cannot ask the model server for its slots; its KV cache is not saved");
            return None;
        }
    };
    let (mut kept, mut bytes) = (0, 0u64);
    for id in 0..slots {
        let Ok(slot) = u32::try_from(id) else { break };
        let req = SlotFileRequest {
            filename: file_name(id),
        };
        match client.slot_save(slot, &req).await {
            Ok(done) if done.n_saved > 0 => {
                let written = u64::try_from(done.n_written).unwrap_or(0);
                if bytes.saturating_add(written) > MAX_SLOT_CACHE_BYTES {
                    let _ = tokio::fs::remove_file(dir.join(&req.filename)).await;
                    tracing::warn!(model = %alias, slot, "the model's saved KV cache would exceed its bound; the slot is not kept");
                    continue;
                }
                bytes += written;
                kept += 1;
            }
            // An empty slot: nothing to keep.
            Ok(_) => {
                let _ = tokio::fs::remove_file(dir.join(&req.filename)).await;
            }
            Err(e) => {
                tracing::warn!(model = %alias, slot, error = %e, "saving a slot of the model failed; it is not kept");
            }
        }
    }
    Some((kept, bytes))
}

/// Restores the slots saved in `dir` into the server `client` reaches, then removes
/// the files, within [`SLOT_CACHE_WAIT`].
pub(crate) async fn restore(client: &Client, dir: &Path, alias: &str) {
    if tokio::time::timeout(SLOT_CACHE_WAIT, restore_all(client, dir, alias))
        .await
        .is_err()
    {
        tracing::warn!(model = %alias, "restoring the model's KV cache took too long; it starts without the rest");
    }
    clear(dir).await;
}

async fn restore_all(client: &Client, dir: &Path, alias: &str) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(slot) = slot_of(&name) else { continue };
        let req = SlotFileRequest { filename: name };
        match client.slot_restore(slot, &req).await {
            Ok(done) => {
                tracing::info!(model = %alias, slot, tokens = done.n_restored, "restored a slot of the model's KV cache");
            }
            Err(e) => {
                tracing::warn!(model = %alias, slot, error = %e, "restoring a slot of the model failed (another llama.cpp version, or a damaged file); it starts empty");
            }
        }
    }
}

/// Removes the slot files in `dir`.
pub(crate) async fn clear(dir: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if slot_of(&entry.file_name().to_string_lossy()).is_some() {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_file_names_round_trip_and_nothing_else_is_a_slot() {
        assert_eq!(slot_of(&file_name(3)), Some(3));
        for name in [
            "slot-.bin",
            "slot-x.bin",
            "slot-1.bin.part",
            "other",
            "slot--1.bin",
        ] {
            assert_eq!(slot_of(name), None, "{name}");
        }
    }
}
