//! The simulated platform: tenants with their users, tokens, projects and live resources.

use std::net::{Ipv4Addr, Ipv6Addr};

use rand::rngs::SmallRng;
use rand::Rng;

use crate::pools::*;
use crate::text::{mix64, push_base32, push_u64};

/// A member of a tenant, as benchmarks and the load generator may filter by it.
#[derive(Debug, Clone)]
pub struct TenantUser {
    /// `user_913`: unique across all tenants.
    pub id: String,
    /// `alice.smith@acme-robotics.com`: the tenant's own domain.
    pub email: String,
    /// The addresses this user connects from (1 to 3; mostly IPv4).
    pub ips: Vec<String>,
    /// Index into the browser user agents: a person mostly keeps one browser.
    pub(crate) browser: u8,
    pub(crate) role: u8,
    /// Removed by `member_removed`; such a user no longer starts sessions.
    pub(crate) removed: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) ip: String,
    pub(crate) revoked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Pod,
    Vm,
    Storage,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Vm => "vm",
            Kind::Storage => "storage",
        }
    }

    fn id_prefix(self) -> &'static str {
        match self {
            Kind::Pod => "pod_",
            Kind::Vm => "vm_",
            Kind::Storage => "vol_",
        }
    }

    pub(crate) fn is_compute(self) -> bool {
        matches!(self, Kind::Pod | Kind::Vm)
    }
}

/// A resource between its create and its delete; updates keep its attributes current, so an
/// update's `old` value is the previous update's `new` value.
#[derive(Debug, Clone)]
pub(crate) struct LiveResource {
    pub(crate) kind: Kind,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) project: u16,
    pub(crate) region: u8,
    pub(crate) running: bool,
    pub(crate) gpu_type: u8,
    pub(crate) gpu_count: u32,
    pub(crate) instance_type: u8,
    /// Index into [`IMAGES`], or past its end into the tenant's own images.
    pub(crate) image: u8,
    pub(crate) disk_gb: u32,
    pub(crate) replicas: u32,
    pub(crate) labels: u8,
    /// Current value index per [`ENV_VARS`] entry; `u8::MAX` means unset.
    pub(crate) env: [u8; 6],
}

#[derive(Debug, Clone)]
pub(crate) struct SshKey {
    pub(crate) id: String,
    pub(crate) name: String,
}

#[derive(Debug)]
pub(crate) struct Tenant {
    pub(crate) name: String,
    pub(crate) domain: String,
    pub(crate) share: f64,
    pub(crate) users: Vec<TenantUser>,
    pub(crate) tokens: Vec<Token>,
    pub(crate) projects: Vec<String>,
    pub(crate) regions: Vec<u8>,
    pub(crate) images: Vec<String>,
    pub(crate) resources: Vec<LiveResource>,
    /// `resources[i].kind`, densely: picking a resource of a kind touches only this.
    pub(crate) resource_kinds: Vec<Kind>,
    pub(crate) resources_min: usize,
    pub(crate) resources_max: usize,
    pub(crate) ssh_keys: Vec<SshKey>,
    /// Emails invited and not yet accepted.
    pub(crate) pending_invites: Vec<String>,
    pub(crate) users_max: usize,
}

/// Hands out unique, random-looking ids: a counter through a bijection.
#[derive(Debug)]
pub(crate) struct IdSource {
    counter: u64,
    key: u64,
}

impl IdSource {
    pub(crate) fn new(key: u64) -> Self {
        IdSource { counter: 0, key }
    }

    /// Appends `prefix` and 7 base32 digits (35 bits: unique for the first 34 billion ids).
    pub(crate) fn short(&mut self, prefix: &str) -> String {
        self.counter += 1;
        let mut id = String::with_capacity(prefix.len() + 7);
        id.push_str(prefix);
        // A bijection on 35 bits: multiply by an odd constant, xorshift, multiply again.
        const MASK: u64 = (1 << 35) - 1;
        let mut value = (self.counter.wrapping_add(self.key)) & MASK;
        value = value.wrapping_mul(0x2545_f491_4f6c_dd1d) & MASK;
        value ^= value >> 17;
        value = value.wrapping_mul(0x9e37_79b9_7f4a_7c15) & MASK;
        push_base32(&mut id, value, 7);
        id
    }

    /// Appends `prefix` and 13 base32 digits of a 64-bit bijection of the counter.
    pub(crate) fn long(&mut self, prefix: &str) -> String {
        let mut id = String::with_capacity(prefix.len() + 13);
        self.long_into(&mut id, prefix);
        id
    }

    /// Writes what [`IdSource::long`] returns into `id`, replacing its content.
    pub(crate) fn long_into(&mut self, id: &mut String, prefix: &str) {
        self.counter += 1;
        id.clear();
        id.push_str(prefix);
        push_base32(id, mix64(self.counter ^ self.key), 13);
    }
}

pub(crate) fn pick<T: Copy>(rng: &mut SmallRng, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())]
}

pub(crate) fn random_ip(rng: &mut SmallRng) -> String {
    if rng.gen_bool(0.12) {
        // Global unicast, from a handful of provider prefixes.
        const PREFIXES: &[[u16; 2]] = &[
            [0x2a01, 0x04f8],
            [0x2600, 0x1f18],
            [0x2001, 0x0db8],
            [0x2a02, 0x8108],
            [0x2406, 0xda14],
        ];
        let prefix = pick(rng, PREFIXES);
        let address = Ipv6Addr::new(
            prefix[0],
            prefix[1],
            rng.gen(),
            rng.gen(),
            rng.gen(),
            rng.gen(),
            rng.gen(),
            rng.gen(),
        );
        address.to_string()
    } else {
        loop {
            let first: u8 = rng.gen_range(1..224);
            // Skip private and loopback ranges: an audit log records public client addresses.
            if first == 10 || first == 127 || first == 172 || first == 192 || first == 100 {
                continue;
            }
            let address = Ipv4Addr::new(first, rng.gen(), rng.gen(), rng.gen_range(1..255));
            return address.to_string();
        }
    }
}

pub(crate) struct TenantBuilder<'a> {
    pub(crate) rng: &'a mut SmallRng,
    pub(crate) ids: &'a mut IdSource,
    pub(crate) next_user_number: &'a mut u64,
}

impl TenantBuilder<'_> {
    pub(crate) fn build(&mut self, name: String, share: f64, top_share: f64) -> Tenant {
        let rng = &mut *self.rng;
        let relative = (share / top_share).sqrt();
        let mut domain = String::new();
        domain.push_str(pick(rng, COMPANY_PREFIXES));
        domain.push('-');
        domain.push_str(pick(rng, COMPANY_SUFFIXES));
        domain.push_str(pick(rng, TLDS));

        let region_count =
            1 + usize::from(relative > 0.05) + usize::from(relative > 0.3) + rng.gen_range(0..2);
        let mut regions: Vec<u8> = Vec::new();
        while regions.len() < region_count.min(REGIONS.len()) {
            let region = rng.gen_range(0..REGIONS.len()) as u8;
            if !regions.contains(&region) {
                regions.push(region);
            }
        }

        let project_count =
            (1 + rng.gen_range(0..3) + (12.0 * relative) as usize).min(PROJECTS.len());
        let mut projects: Vec<String> = vec!["proj_default".to_string()];
        while projects.len() < project_count {
            let slug = format!("proj_{}", pick(rng, PROJECTS));
            if !projects.contains(&slug) {
                projects.push(slug);
            }
        }

        let company = &domain[..domain.find('-').unwrap_or(domain.len())];
        let images = (0..3)
            .map(|index| {
                let repository = ["trainer", "inference", "notebook"][index];
                format!(
                    "registry.{domain}/{company}/{repository}:1.{}.{}",
                    rng.gen_range(0..20),
                    rng.gen_range(0..10)
                )
            })
            .collect();

        let user_count = 4 + rng.gen_range(0..8) + (140.0 * relative) as usize;
        let users_max = user_count * 2 + 8;
        let mut tenant = Tenant {
            name,
            domain,
            share,
            users: Vec::with_capacity(user_count),
            tokens: Vec::new(),
            projects,
            regions,
            images,
            resources: Vec::new(),
            resource_kinds: Vec::new(),
            resources_min: 0,
            resources_max: 0,
            ssh_keys: Vec::new(),
            pending_invites: Vec::new(),
            users_max,
        };
        for _ in 0..user_count {
            let email = self.fresh_email(&tenant);
            let user = self.new_user(email);
            tenant.users.push(user);
        }
        let token_count = 1 + self.rng.gen_range(0..3) + (14.0 * relative) as usize;
        for _ in 0..token_count {
            let token = self.new_token();
            tenant.tokens.push(token);
        }
        let key_count = 1 + self.rng.gen_range(0..4) + (30.0 * relative) as usize;
        for _ in 0..key_count {
            let key = self.new_ssh_key(&tenant);
            tenant.ssh_keys.push(key);
        }
        let resource_count = 4 + self.rng.gen_range(0..10) + (3000.0 * share) as usize;
        tenant.resources_min = resource_count / 3 + 2;
        tenant.resources_max = resource_count * 2 + 16;
        for _ in 0..resource_count {
            let kind = self.random_kind();
            let mut resource = self.new_resource(&tenant, kind);
            resource.running = self.rng.gen_bool(0.5);
            tenant.push_resource(resource);
        }
        tenant
    }

    pub(crate) fn fresh_email(&mut self, tenant: &Tenant) -> String {
        let rng = &mut *self.rng;
        let mut email = String::with_capacity(40);
        email.push_str(pick(rng, FIRST_NAMES));
        email.push('.');
        email.push_str(pick(rng, LAST_NAMES));
        // Large tenants have namesakes: alice.smith2@.
        if tenant.users.len() > 20 && rng.gen_bool(0.2) {
            push_u64(&mut email, rng.gen_range(2..10));
        }
        email.push('@');
        email.push_str(&tenant.domain);
        email
    }

    pub(crate) fn new_user(&mut self, email: String) -> TenantUser {
        let rng = &mut *self.rng;
        *self.next_user_number += rng.gen_range(1..9);
        let mut id = String::with_capacity(12);
        id.push_str("user_");
        push_u64(&mut id, *self.next_user_number);
        let ip_count = match rng.gen_range(0..10) {
            0..=4 => 1,
            5..=8 => 2,
            _ => 3,
        };
        let ips = (0..ip_count).map(|_| random_ip(rng)).collect();
        TenantUser {
            id,
            email,
            ips,
            browser: rng.gen_range(0..BROWSER_AGENTS.len()) as u8,
            role: rng.gen_range(0..ROLES.len()) as u8,
            removed: false,
        }
    }

    pub(crate) fn new_token(&mut self) -> Token {
        let name = pick(self.rng, TOKEN_NAMES).to_string();
        Token {
            id: self.ids.long("tok_"),
            name,
            ip: random_ip(self.rng),
            revoked: false,
        }
    }

    pub(crate) fn new_ssh_key(&mut self, tenant: &Tenant) -> SshKey {
        let mut name = String::with_capacity(24);
        if let Some(user) = tenant
            .users
            .get(self.rng.gen_range(0..tenant.users.len().max(1)))
        {
            name.push_str(&user.email[..user.email.find('.').unwrap_or(0)]);
        } else {
            name.push_str("deploy");
        }
        name.push('@');
        name.push_str(pick(self.rng, SSH_KEY_HOSTS));
        SshKey {
            id: self.ids.short("key_"),
            name,
        }
    }

    pub(crate) fn random_kind(&mut self) -> Kind {
        match self.rng.gen_range(0..100) {
            0..=57 => Kind::Pod,
            58..=83 => Kind::Vm,
            _ => Kind::Storage,
        }
    }

    pub(crate) fn new_resource(&mut self, tenant: &Tenant, kind: Kind) -> LiveResource {
        let rng = &mut *self.rng;
        let names = match kind {
            Kind::Pod => POD_NAMES,
            Kind::Vm => VM_NAMES,
            Kind::Storage => STORAGE_NAMES,
        };
        let mut name = String::with_capacity(24);
        name.push_str(pick(rng, names));
        if rng.gen_bool(0.85) {
            name.push('-');
            push_u64(&mut name, rng.gen_range(1..24));
        }
        let custom_images = tenant.images.len() as u8;
        let image = if rng.gen_bool(0.3) {
            IMAGES.len() as u8 + rng.gen_range(0..custom_images.max(1))
        } else {
            rng.gen_range(0..IMAGES.len()) as u8
        };
        let mut env = [u8::MAX; 6];
        for (slot, (_, values)) in env.iter_mut().zip(ENV_VARS) {
            if rng.gen_bool(0.4) {
                *slot = rng.gen_range(0..values.len()) as u8;
            }
        }
        LiveResource {
            kind,
            id: self.ids.short(kind.id_prefix()),
            name,
            project: rng.gen_range(0..tenant.projects.len()) as u16,
            region: pick(rng, &tenant.regions),
            running: kind.is_compute(),
            gpu_type: rng.gen_range(0..GPU_TYPES.len()) as u8,
            gpu_count: pick(rng, GPU_COUNTS),
            instance_type: rng.gen_range(0..INSTANCE_TYPES.len()) as u8,
            image,
            disk_gb: pick(rng, DISK_SIZES_GB),
            replicas: pick(rng, REPLICAS),
            labels: rng.gen_range(0..LABEL_SETS.len()) as u8,
            env,
        }
    }
}

impl Tenant {
    pub(crate) fn push_resource(&mut self, resource: LiveResource) {
        self.resource_kinds.push(resource.kind);
        self.resources.push(resource);
    }

    pub(crate) fn remove_resource(&mut self, index: usize) -> LiveResource {
        self.resource_kinds.swap_remove(index);
        self.resources.swap_remove(index)
    }

    pub(crate) fn image(&self, index: u8) -> &str {
        image_name(&self.images, index)
    }
}

/// Image `index`: one of [`IMAGES`], or past its end one of the tenant's own `custom` images.
pub(crate) fn image_name(custom: &[String], index: u8) -> &str {
    let index = usize::from(index);
    if index < IMAGES.len() {
        IMAGES[index]
    } else {
        &custom[(index - IMAGES.len()) % custom.len()]
    }
}
