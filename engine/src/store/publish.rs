//! Publication: the one way the set of sealed segments changes on disk. The change is recorded
//! in the integrity ledger (fsynced) and only then is the new manifest written, so the
//! manifest never lists a segment the ledger lacks.
//!
//! A manifest write that fails may still have taken effect (its rename done, the directory's
//! fsync failed): the ledger then records a revert (the store goes on without the change), and
//! the manifest is *in doubt* until the store writes its in-memory manifest again, which the
//! next publication does first. So at most one unpublished entry is ever at the ledger's end,
//! which is what open knows how to cut.

use std::sync::atomic::Ordering;

use crate::error::Error;
use crate::ledger::Change;
use crate::manifest::Manifest;

use super::Inner;

/// Why a publication failed.
pub(crate) enum PublishFailure {
    /// Nothing reached the manifest: what was written for it may be deleted.
    NotPublished(Error),
    /// The manifest write failed part way and may be in effect: what it lists must stay (an
    /// open removes it if it is not), and its segment ids are never given out again.
    InDoubt(Error),
}

impl PublishFailure {
    pub(crate) fn into_error(self) -> Error {
        match self {
            PublishFailure::NotPublished(error) | PublishFailure::InDoubt(error) => error,
        }
    }
}

impl Inner {
    /// Records `change` in the ledger, then writes `manifest` (its generation raised past the
    /// store's).
    pub(crate) fn publish_segments(
        &self,
        change: Change,
        manifest: &mut Manifest,
    ) -> Result<(), PublishFailure> {
        self.settle_manifest()
            .map_err(PublishFailure::NotPublished)?;
        self.ledger
            .lock()
            .append(change)
            .map_err(PublishFailure::NotPublished)?;
        let current = self.state.read().manifest.generation;
        manifest.generation = manifest.generation.max(current + 1);
        if let Err(error) = manifest.store(&self.options.dir, self.options.vfs.as_ref()) {
            // Whatever reached the disk, the store goes on without the change: the ledger says
            // so (or will, before its next entry), and the next publication writes the
            // in-memory manifest again first.
            let _ = self.ledger.lock().revert_last();
            self.manifest_in_doubt.store(true, Ordering::SeqCst);
            return Err(PublishFailure::InDoubt(error));
        }
        self.ledger.lock().mark_published();
        Ok(())
    }

    /// After a manifest write that failed part way: writes the in-memory manifest again, so
    /// that the disk and the ledger agree before anything else is published, or before files
    /// the in-memory manifest does not list are removed (retention: the one in doubt on disk
    /// may list them).
    pub(super) fn settle_manifest(&self) -> crate::error::Result<()> {
        if !self.manifest_in_doubt.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut manifest = self.state.read().manifest.clone();
        manifest.generation += 1;
        manifest.store(&self.options.dir, self.options.vfs.as_ref())?;
        let mut ledger = self.ledger.lock();
        // The revert of the change in doubt must be in the ledger before anything follows it.
        ledger.revert_last()?;
        self.state.write().manifest.generation = manifest.generation;
        self.manifest_in_doubt.store(false, Ordering::SeqCst);
        ledger.mark_published();
        Ok(())
    }
}
