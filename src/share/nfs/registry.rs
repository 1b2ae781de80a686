//! The tasks the NFS server has seen: each gets a slot (the top bits of its file ids) when its share is first
//! looked up by name, and keeps it for the server's life. Makes and checks file handles with each slot's key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nfsserve::nfs::nfsstat3;

use super::handle::{self, ROOT_SLOT};
use super::task::TaskShare;
use crate::share::lazy::share::lock;
use crate::share::store::Store;

#[derive(Default)]
struct Tasks {
    by_slot: HashMap<u16, Arc<TaskShare>>,
    by_name: HashMap<(String, String), u16>,
    next: u16,
}

/// The store, this server's generation and root key, and the tasks by slot and by (task, token).
pub(crate) struct Registry {
    store: Store,
    generation: u64,
    root_key: ring::hmac::Key,
    tasks: Mutex<Tasks>,
}

impl Registry {
    /// A registry of `store`'s tasks, with a fresh generation and root key.
    pub(crate) fn new(store: Store) -> Registry {
        let secret: [u8; 32] = rand::random();
        Registry {
            store,
            generation: rand::random(),
            root_key: handle::key(&secret),
            tasks: Mutex::new(Tasks::default()),
        }
    }

    /// The store.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// This server's generation (in every handle it makes).
    #[cfg(test)]
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Every task's share seen so far.
    pub(crate) fn all(&self) -> Vec<Arc<TaskShare>> {
        lock(&self.tasks).by_slot.values().cloned().collect()
    }

    /// The share of a task's slot (stale when the slot is unknown to this server).
    pub(crate) fn task(&self, slot: u16) -> Result<Arc<TaskShare>, nfsstat3> {
        lock(&self.tasks)
            .by_slot
            .get(&slot)
            .cloned()
            .ok_or(nfsstat3::NFS3ERR_STALE)
    }

    /// The task's share named `name` in the export root, if its token is the store's (NFS3ERR_NOENT otherwise,
    /// whatever is wrong with it).
    pub(crate) fn share_named(&self, name: &str) -> Result<Arc<TaskShare>, nfsstat3> {
        let (task, token) = handle::parse_share_name(name).ok_or(nfsstat3::NFS3ERR_NOENT)?;
        match self.store.nfs_token(task) {
            Ok(Some(kept)) if handle::same_secret(&kept, token) => {}
            _ => return Err(nfsstat3::NFS3ERR_NOENT),
        }
        let mut tasks = lock(&self.tasks);
        let key = (task.to_string(), token.to_string());
        if let Some(slot) = tasks.by_name.get(&key) {
            return tasks
                .by_slot
                .get(slot)
                .cloned()
                .ok_or(nfsstat3::NFS3ERR_SERVERFAULT);
        }
        // Slot 0 is the root; 65,535 task shares in one server's life are enough (a restart starts over).
        let slot = tasks.next.checked_add(1).ok_or(nfsstat3::NFS3ERR_NOSPC)?;
        tasks.next = slot;
        let share = Arc::new(TaskShare::new(task, token, slot));
        tasks.by_slot.insert(slot, share.clone());
        tasks.by_name.insert(key, slot);
        Ok(share)
    }

    fn key(&self, slot: u16) -> Option<ring::hmac::Key> {
        if slot == ROOT_SLOT {
            Some(self.root_key.clone())
        } else {
            self.task(slot).ok().map(|t| t.key.clone())
        }
    }

    /// The handle of file `id`. Every id handed out has a known slot; an unknown one gets an empty handle, which
    /// no request accepts.
    pub(crate) fn handle(&self, id: u64) -> Vec<u8> {
        self.key(handle::split_id(id).0)
            .map(|key| handle::encode(self.generation, id, &key))
            .unwrap_or_default()
    }

    /// The file id a handle names, if this server made it.
    pub(crate) fn file_id(&self, data: &[u8]) -> Result<u64, nfsstat3> {
        handle::decode(data, self.generation, |slot| self.key(slot))
    }
}
