variable "host" {
  description = "The host's name (the first part it runs: a region's core host is named after the region, an edge's host after the edge)."
  type        = string
}

variable "parts" {
  description = "The parts this host runs, by name: each one's kind (core, edge, router or cdn) and config text (modules/mesh-config renders them)."
  type = map(object({
    kind   = string
    config = string
  }))

  validation {
    condition     = length(var.parts) > 0 && alltrue([for p in values(var.parts) : contains(["core", "edge", "router", "cdn"], p.kind)])
    error_message = "A host runs at least one part, each a core, an edge, a router or a CDN cache."
  }
  validation {
    condition     = alltrue([for n in keys(var.parts) : can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", n))])
    error_message = "Part names are lowercase letters, digits and inner dashes (they name units and files)."
  }
}

variable "regions" {
  description = "Every region's host addresses (IPv4), by region name: what `tradewind-link` cuts and slows on the drills' behalf."
  type        = map(list(string))

  validation {
    condition = alltrue(flatten([for n, addrs in var.regions : concat(
      [can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", n))],
      [for a in addrs : can(regex("^[0-9]+(\\.[0-9]+){3}$", a)) && can(cidrhost("${a}/32", 0))]
    )]))
    error_message = "Region names are lowercase letters, digits and inner dashes; addresses are IPv4."
  }
}

variable "binary" {
  description = "The tradewind release the host runs: where it is downloaded from (HTTPS), and its SHA-256, checked before it is installed."
  type = object({
    url    = string
    sha256 = string
  })

  validation {
    condition     = startswith(var.binary.url, "https://") && can(regex("^[0-9a-f]{64}$", var.binary.sha256))
    error_message = "The binary's url is https:// and its sha256 64 lowercase hex digits."
  }
}

variable "secret" {
  description = "Where the host's secrets are kept: an AWS Secrets Manager secret (its ARN and region) whose binary value is a gzip tar of the files the host's parts read from secrets_dir (examples/aws/bundle.sh makes it). Fetched at every boot into memory (/run), never written to disk, never passed through Terraform."
  type = object({
    arn    = string
    region = string
  })
}

variable "secrets_dir" {
  description = "Where the parts' configs say the secrets are: under /run (memory), as the secrets unit puts them there."
  type        = string
  default     = "/run/tradewind/secrets"

  validation {
    condition     = startswith(var.secrets_dir, "/run/tradewind/")
    error_message = "The secrets live in memory, under /run/tradewind/."
  }
}

variable "data_device" {
  description = "The block device that holds the parts' data (formatted ext4 on first boot if blank, mounted at /var/lib/tradewind); null keeps the data on the root disk."
  type        = string
  default     = null
}

variable "interface" {
  description = "The network interface that carries traffic between regions (where `tradewind-link` slows links)."
  type        = string
  default     = "ens5"
}

variable "ops" {
  description = "The account the drills and operators use over ssh: its name and authorized keys. It may start, stop and kill this host's parts and shape its links (through sudo, those two commands only), nothing else as root."
  type = object({
    user     = optional(string, "tradewind-ops")
    ssh_keys = list(string)
  })
}
