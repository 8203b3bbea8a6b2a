//! Static vocabularies the generator draws from: names, products, images, user agents.
//!
//! Every string here is plain ASCII without JSON-special characters, so the generator can splice
//! them into `changes` and `details` JSON text without escaping.

pub(crate) const FIRST_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yuki", "zoe",
    "amir", "bea", "chen", "diego", "elena", "farah", "gustav", "hana", "igor", "jonas", "kavya",
    "lars", "maria", "nikhil", "omar", "priya", "quinn", "rosa", "sanjay", "tomas", "uma", "vera",
    "wei", "ximena", "yusuf", "zara", "akira", "bianca", "carlos", "dmitri", "emma", "fatima",
    "giulia", "hiro", "ines", "jamal", "katja", "leon", "mei",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "martinez",
    "lopez", "wilson", "anderson", "thomas", "taylor", "moore", "martin", "lee", "perez",
    "thompson", "white", "harris", "clark", "lewis", "walker", "hall", "young", "king", "wright",
    "scott", "nguyen", "mueller", "schmidt", "rossi", "dubois", "tanaka", "sato", "kim", "park",
    "patel", "singh", "kowalski", "novak", "silva", "santos", "ivanova", "larsen", "berg",
    "okafor", "mensah", "haddad",
];

pub(crate) const COMPANY_PREFIXES: &[&str] = &[
    "acme",
    "northwind",
    "bluefin",
    "quantum",
    "helix",
    "nimbus",
    "vertex",
    "lumen",
    "orbital",
    "cobalt",
    "tandem",
    "polaris",
    "granite",
    "aurora",
    "sparrow",
    "ember",
    "cascade",
    "mosaic",
    "zenith",
    "juniper",
    "atlas",
    "kepler",
    "pioneer",
    "redwood",
    "silverline",
    "tessera",
    "umbra",
    "vantage",
    "willow",
    "yonder",
    "deepfield",
    "brightpath",
    "coral",
    "driftwood",
];

pub(crate) const COMPANY_SUFFIXES: &[&str] = &[
    "robotics",
    "labs",
    "ai",
    "bio",
    "systems",
    "analytics",
    "vision",
    "health",
    "research",
    "dynamics",
    "genomics",
    "studio",
    "logistics",
    "motors",
    "media",
    "finance",
    "energy",
];

pub(crate) const TLDS: &[&str] = &[".com", ".com", ".com", ".io", ".ai", ".dev", ".co", ".de"];

/// Project slugs (`proj_` is prepended) and the display name used when a project is created.
pub(crate) const PROJECTS: &[&str] = &[
    "default",
    "ml-research",
    "inference",
    "training",
    "data-pipeline",
    "staging",
    "prod",
    "experiments",
    "vision",
    "nlp",
    "rl-sim",
    "recsys",
    "llm-finetune",
    "eval",
    "platform",
    "speech",
    "genai-demo",
    "robotics-sim",
    "batch-jobs",
    "notebooks",
    "ci",
    "sandbox",
    "customer-a",
    "customer-b",
];

pub(crate) const POD_NAMES: &[&str] = &[
    "llama-finetune",
    "sdxl-inference",
    "whisper-batch",
    "bert-train",
    "jupyter",
    "vllm-serve",
    "mistral-eval",
    "comfyui",
    "trainer",
    "notebook",
    "tgi-server",
    "embedding-worker",
    "yolo-train",
    "qwen-sft",
    "triton-serve",
    "ray-head",
    "ray-worker",
    "dataloader",
];

pub(crate) const VM_NAMES: &[&str] = &[
    "gpu-box",
    "dev-vm",
    "build-runner",
    "a100-node",
    "h100-node",
    "bastion",
    "render-node",
    "research-ws",
    "k8s-worker",
    "slurm-node",
];

pub(crate) const STORAGE_NAMES: &[&str] = &[
    "data-vol",
    "checkpoints",
    "datasets",
    "model-cache",
    "scratch",
    "hf-cache",
    "results",
    "shared-home",
];

pub(crate) const REGIONS: &[&str] = &[
    "us-east",
    "us-west",
    "eu-west",
    "eu-central",
    "ap-northeast",
    "us-central",
];

pub(crate) const GPU_TYPES: &[&str] = &[
    "H100-80GB",
    "A100-80GB",
    "A100-40GB",
    "L40S-48GB",
    "A10-24GB",
    "RTX-6000-Ada",
];

pub(crate) const INSTANCE_TYPES: &[&str] = &[
    "gpu_1x_h100",
    "gpu_2x_h100",
    "gpu_8x_h100",
    "gpu_1x_a100",
    "gpu_2x_a100",
    "gpu_4x_a100",
    "gpu_8x_a100",
    "gpu_1x_a10",
    "gpu_1x_l40s",
    "gpu_4x_l40s",
    "cpu_16x_64gb",
];

pub(crate) const IMAGES: &[&str] = &[
    "nvcr.io/nvidia/pytorch:24.05-py3",
    "nvcr.io/nvidia/pytorch:24.10-py3",
    "vllm/vllm-openai:v0.6.3",
    "vllm/vllm-openai:v0.6.4",
    "ghcr.io/huggingface/text-generation-inference:2.4",
    "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
    "jupyter/tensorflow-notebook:2024-10-07",
    "nvcr.io/nvidia/tritonserver:24.09-py3",
    "ubuntu:22.04",
];

pub(crate) const GPU_COUNTS: &[u32] = &[1, 1, 1, 2, 2, 4, 4, 8];
pub(crate) const DISK_SIZES_GB: &[u32] = &[50, 100, 100, 200, 250, 500, 1000, 2000, 4000];
pub(crate) const REPLICAS: &[u32] = &[1, 1, 2, 2, 3, 4, 6, 8, 12, 16];

/// Label sets as compact JSON objects; an update moves a resource from one to another.
pub(crate) const LABEL_SETS: &[&str] = &[
    r#"{"env":"dev","team":"ml"}"#,
    r#"{"env":"prod","team":"ml"}"#,
    r#"{"env":"staging","team":"ml"}"#,
    r#"{"env":"dev","team":"research"}"#,
    r#"{"cost-center":"rd-4410","env":"prod","team":"research"}"#,
    r#"{"env":"prod","owner":"inference","tier":"critical"}"#,
    r#"{"env":"dev","experiment":"lr-sweep"}"#,
    r#"{"env":"dev","experiment":"dpo-v2","team":"alignment"}"#,
    r#"{}"#,
];

pub(crate) const ENV_VARS: &[(&str, &[&str])] = &[
    (
        "WANDB_PROJECT",
        &[
            "llama-sft",
            "llama-dpo",
            "sdxl-lora",
            "whisper-ft",
            "baseline",
        ],
    ),
    ("HF_HOME", &["/data/hf", "/mnt/cache/hf", "/scratch/hf"]),
    ("NCCL_DEBUG", &["WARN", "INFO", "TRACE"]),
    (
        "MODEL_ID",
        &[
            "meta-llama/Llama-3.1-8B",
            "meta-llama/Llama-3.1-70B",
            "mistralai/Mistral-7B-v0.3",
            "Qwen/Qwen2.5-32B",
        ],
    ),
    ("BATCH_SIZE", &["8", "16", "32", "64"]),
    ("MAX_SEQ_LEN", &["2048", "4096", "8192"]),
];

pub(crate) const BROWSER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
];

pub(crate) const CLI_AGENTS: &[&str] = &[
    "auditlog-cli/1.2.0 (linux; x86_64)",
    "auditlog-cli/1.2.3 (darwin; arm64)",
    "auditlog-cli/1.1.9 (linux; x86_64)",
];

pub(crate) const TERRAFORM_AGENTS: &[&str] = &[
    "Terraform/1.9.8 (+https://www.terraform.io) terraform-provider-gpucloud/0.14.2",
    "Terraform/1.5.7 (+https://www.terraform.io) terraform-provider-gpucloud/0.12.0",
    "OpenTofu/1.8.5 terraform-provider-gpucloud/0.14.2",
];

pub(crate) const SCRIPT_AGENTS: &[&str] = &[
    "python-requests/2.32.3",
    "python-requests/2.31.0",
    "gpucloud-python/0.9.1 python/3.11.9",
    "Go-http-client/2.0",
    "curl/8.5.0",
];

/// System actors: (actor id, user agent).
pub(crate) const SYSTEM_ACTORS: &[(&str, &str)] = &[
    ("system:autoscaler", "autoscaler/3.4.1"),
    ("system:scheduler", "scheduler/2.11.0"),
    ("system:billing", "billing-worker/1.8.2"),
    ("system:maintenance", "node-maintenance/0.7.3"),
];

pub(crate) const TOKEN_NAMES: &[&str] = &[
    "ci-deploy",
    "terraform",
    "github-actions",
    "airflow",
    "monitoring",
    "jupyter-hub",
    "batch-scheduler",
    "dev-laptop",
    "mlflow",
    "argo-workflows",
];

pub(crate) const TOKEN_SCOPES: &[&str] = &[
    r#"["pods:write","vms:write","storage:write"]"#,
    r#"["pods:read","vms:read"]"#,
    r#"["pods:write"]"#,
    r#"["*"]"#,
    r#"["storage:read","storage:write"]"#,
];

pub(crate) const SSH_KEY_HOSTS: &[&str] = &["laptop", "workstation", "macbook", "desktop", "ci"];

pub(crate) const ROLES: &[&str] = &["viewer", "member", "member", "member", "admin", "owner"];

pub(crate) const STOP_REASONS: &[&str] = &[
    "user request",
    "user request",
    "user request",
    "job finished",
    "idle timeout",
    "cost saving",
    "end of day",
];

pub(crate) const SYSTEM_STOP_REASONS: &[&str] = &[
    "idle timeout",
    "idle timeout",
    "spot preemption",
    "insufficient credits",
    "host maintenance",
];

pub(crate) const RESTART_REASONS: &[&str] = &[
    "user request",
    "oom killed",
    "health check failed",
    "driver update",
    "config change",
];

pub(crate) const UPDATE_REASONS: &[&str] = &[
    "scale up",
    "scale down",
    "new model version",
    "cost optimization",
    "experiment config",
    "security patch",
];

pub(crate) const FAILURE_REASONS: &[&str] = &[
    "insufficient capacity: no H100 available in region",
    "quota exceeded: gpu_count",
    "image pull failed: manifest unknown",
    "volume attach timeout",
    "permission denied",
];

pub(crate) const LOGIN_METHODS: &[&str] = &["password", "sso", "sso", "sso", "github", "google"];

pub(crate) const LOGIN_FAILURE_REASONS: &[&str] = &[
    "invalid password",
    "invalid password",
    "mfa code rejected",
    "account locked",
    "sso assertion expired",
];
