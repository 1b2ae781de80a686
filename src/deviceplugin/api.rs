//! The messages of the kubelet Device Plugin API v1beta1, as prost structs written by hand from
//! `proto/deviceplugin/v1beta1/api.proto` (kb builds without protoc). Field tags are the proto's; fields kb never
//! sends or reads are left out, which proto3 allows (a decoder skips unknown fields).
//!
//! Data only: no I/O.

use std::collections::HashMap;

/// The API version kb speaks, sent in [`RegisterRequest::version`].
pub const VERSION: &str = "v1beta1";
/// [`Device::health`] of a usable device.
pub const HEALTHY: &str = "Healthy";

/// What the plugin tells the kubelet about itself.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DevicePluginOptions {
    /// The kubelet calls PreStartContainer before each container start.
    #[prost(bool, tag = "1")]
    pub pre_start_required: bool,
    /// The kubelet may call GetPreferredAllocation.
    #[prost(bool, tag = "2")]
    pub get_preferred_allocation_available: bool,
}

/// Registration.Register's request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterRequest {
    /// The API version the plugin speaks ([`VERSION`]).
    #[prost(string, tag = "1")]
    pub version: String,
    /// The plugin's socket, as a name relative to the device plugin directory.
    #[prost(string, tag = "2")]
    pub endpoint: String,
    /// The extended resource the plugin serves (`vendor-domain/name`).
    #[prost(string, tag = "3")]
    pub resource_name: String,
    /// The plugin's options.
    #[prost(message, optional, tag = "4")]
    pub options: Option<DevicePluginOptions>,
}

/// The empty message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

/// One message of the ListAndWatch stream: the whole list of devices.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListAndWatchResponse {
    /// Every device the plugin has.
    #[prost(message, repeated, tag = "1")]
    pub devices: Vec<Device>,
}

/// One device as the kubelet counts it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Device {
    /// Its ID (at most 63 characters).
    #[prost(string, tag = "1")]
    pub id: String,
    /// [`HEALTHY`] or `Unhealthy`.
    #[prost(string, tag = "2")]
    pub health: String,
}

/// PreStartContainer's request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PreStartContainerRequest {
    /// The devices of the container about to start.
    #[prost(string, repeated, tag = "1")]
    pub devices_ids: Vec<String>,
}

/// PreStartContainer's (empty) response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PreStartContainerResponse {}

/// GetPreferredAllocation's request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PreferredAllocationRequest {
    /// One request per container.
    #[prost(message, repeated, tag = "1")]
    pub container_requests: Vec<ContainerPreferredAllocationRequest>,
}

/// The devices a container may get and must get.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerPreferredAllocationRequest {
    /// The devices to choose from.
    #[prost(string, repeated, tag = "1")]
    pub available_device_ids: Vec<String>,
    /// The devices the choice must include.
    #[prost(string, repeated, tag = "2")]
    pub must_include_device_ids: Vec<String>,
    /// How many to choose.
    #[prost(int32, tag = "3")]
    pub allocation_size: i32,
}

/// GetPreferredAllocation's response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PreferredAllocationResponse {
    /// One response per container.
    #[prost(message, repeated, tag = "1")]
    pub container_responses: Vec<ContainerPreferredAllocationResponse>,
}

/// The devices the plugin prefers for a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerPreferredAllocationResponse {
    /// The preferred devices.
    #[prost(string, repeated, tag = "1")]
    pub device_ids: Vec<String>,
}

/// Allocate's request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AllocateRequest {
    /// One request per container.
    #[prost(message, repeated, tag = "1")]
    pub container_requests: Vec<ContainerAllocateRequest>,
}

/// The devices the kubelet gave a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerAllocateRequest {
    /// The device IDs.
    #[prost(string, repeated, tag = "1")]
    pub devices_ids: Vec<String>,
}

/// Allocate's response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AllocateResponse {
    /// One response per container, in the request's order.
    #[prost(message, repeated, tag = "1")]
    pub container_responses: Vec<ContainerAllocateResponse>,
}

/// What the container runtime must give one container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerAllocateResponse {
    /// Environment variables to set.
    #[prost(map = "string, string", tag = "1")]
    pub envs: HashMap<String, String>,
    /// Device nodes to create in the container (and allow in its device cgroup).
    #[prost(message, repeated, tag = "3")]
    pub devices: Vec<DeviceSpec>,
    /// Annotations for the container runtime.
    #[prost(map = "string, string", tag = "4")]
    pub annotations: HashMap<String, String>,
}

/// One device node for a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeviceSpec {
    /// Its path inside the container.
    #[prost(string, tag = "1")]
    pub container_path: String,
    /// Its path on the host.
    #[prost(string, tag = "2")]
    pub host_path: String,
    /// Cgroup permissions: some of `r`, `w`, `m` (mknod).
    #[prost(string, tag = "3")]
    pub permissions: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn encodes_with_the_protos_tags() {
        let spec = DeviceSpec {
            container_path: "/a".into(),
            host_path: "/b".into(),
            permissions: "rw".into(),
        };
        // Field 1 (length-delimited: tag byte 0x0a) "/a", field 2 (0x12) "/b", field 3 (0x1a) "rw".
        assert_eq!(
            spec.encode_to_vec(),
            b"\x0a\x02/a\x12\x02/b\x1a\x02rw".to_vec()
        );
        let request = RegisterRequest {
            version: VERSION.into(),
            endpoint: "kb-fuse.sock".into(),
            resource_name: "kb.dev/fuse".into(),
            options: Some(DevicePluginOptions::default()),
        };
        let bytes = request.encode_to_vec();
        assert_eq!(&bytes[..9], b"\x0a\x07v1beta1");
        assert_eq!(RegisterRequest::decode(bytes.as_slice()).unwrap(), request);
    }
}
