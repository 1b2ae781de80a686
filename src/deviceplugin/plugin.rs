//! What the FUSE device plugin answers the kubelet: a fixed list of healthy virtual devices, each a share of the
//! node's one `/dev/fuse`, and for every allocation that device node at the same path in the container.
//!
//! Pure: no I/O (the loop that serves and registers is [`super::run`]).

use std::path::PathBuf;

use super::api::{
    AllocateRequest, AllocateResponse, ContainerAllocateResponse,
    ContainerPreferredAllocationResponse, Device, DevicePluginOptions, DeviceSpec, HEALTHY,
    ListAndWatchResponse, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse,
};

/// The resource name kb's pods request to get `/dev/fuse`.
pub const FUSE_RESOURCE: &str = "kb.dev/fuse";
/// The device node handed to containers, at the same path on the host and in the container.
pub const FUSE_DEVICE: &str = "/dev/fuse";

/// One device plugin: the resource it serves, how many containers may hold it at once, and the node it hands out.
#[derive(Debug, Clone, PartialEq)]
pub struct Plugin {
    /// The extended resource (`kb.dev/fuse`).
    pub resource: String,
    /// The device node (`/dev/fuse`).
    pub device: PathBuf,
    /// How many virtual devices to advertise: how many containers of the node may hold the resource at once.
    pub count: u32,
}

impl Plugin {
    /// The options kb registers with: no PreStartContainer, no GetPreferredAllocation.
    pub fn options() -> DevicePluginOptions {
        DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: false,
        }
    }

    /// The device list ListAndWatch sends: `fuse-0` .. `fuse-{count-1}`, all healthy.
    pub fn devices(&self) -> ListAndWatchResponse {
        ListAndWatchResponse {
            devices: (0..self.count)
                .map(|i| Device {
                    id: format!("fuse-{i}"),
                    health: HEALTHY.into(),
                })
                .collect(),
        }
    }

    /// Every container gets the device node read-write (no mknod right), whichever virtual devices it got.
    pub fn allocate(&self, request: AllocateRequest) -> AllocateResponse {
        let path = self.device.display().to_string();
        AllocateResponse {
            container_responses: request
                .container_requests
                .iter()
                .map(|_| ContainerAllocateResponse {
                    devices: vec![DeviceSpec {
                        container_path: path.clone(),
                        host_path: path.clone(),
                        permissions: "rw".into(),
                    }],
                    ..Default::default()
                })
                .collect(),
        }
    }

    /// Never called (the options say so); answers with the first devices offered, as the kubelet would choose.
    pub fn preferred(&self, request: PreferredAllocationRequest) -> PreferredAllocationResponse {
        PreferredAllocationResponse {
            container_responses: request
                .container_requests
                .into_iter()
                .map(|c| ContainerPreferredAllocationResponse {
                    device_ids: c
                        .available_device_ids
                        .into_iter()
                        .take(usize::try_from(c.allocation_size).unwrap_or_default())
                        .collect(),
                })
                .collect(),
        }
    }

    /// Never called (the options say so); nothing to prepare.
    pub fn pre_start(&self, _: PreStartContainerRequest) -> PreStartContainerResponse {
        PreStartContainerResponse {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deviceplugin::api::ContainerAllocateRequest;

    fn plugin() -> Plugin {
        Plugin {
            resource: FUSE_RESOURCE.into(),
            device: FUSE_DEVICE.into(),
            count: 3,
        }
    }

    #[test]
    fn advertises_count_healthy_devices() {
        let list = plugin().devices();
        let ids: Vec<&str> = list.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["fuse-0", "fuse-1", "fuse-2"]);
        assert!(list.devices.iter().all(|d| d.health == "Healthy"));
    }

    #[test]
    fn every_container_gets_dev_fuse_read_write() {
        let request = AllocateRequest {
            container_requests: vec![
                ContainerAllocateRequest {
                    devices_ids: vec!["fuse-0".into()],
                },
                ContainerAllocateRequest {
                    devices_ids: vec!["fuse-1".into(), "fuse-2".into()],
                },
            ],
        };
        let response = plugin().allocate(request);
        assert_eq!(response.container_responses.len(), 2);
        for container in response.container_responses {
            assert_eq!(
                container.devices,
                [DeviceSpec {
                    container_path: "/dev/fuse".into(),
                    host_path: "/dev/fuse".into(),
                    permissions: "rw".into(),
                }]
            );
            assert!(container.envs.is_empty());
        }
    }
}
