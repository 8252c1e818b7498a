variable "region" {
  description = "The mesh's region these hosts are (one of modules/mesh-config's regions): its core's address and its edges."
  type = object({
    name    = string
    address = string
    edges = list(object({
      name    = string
      address = string
    }))
  })
}

variable "parts" {
  description = "modules/mesh-config's `parts`: this region's core and edges run on hosts of their own, and a geo-router beside every core."
  type = map(object({
    kind   = string
    region = optional(string)
    config = string
  }))
}

variable "hosts" {
  description = "Every region's host addresses by region name, its core host's first, then its edges': the links between regions that the firewalls open and the drills cut."
  type        = map(list(string))
}

variable "paths" {
  description = "modules/mesh-config's `paths` (see modules/host-config)."
  type = object({
    secrets_dir = string
    data_dir    = string
    keys_dir    = string
  })
}

variable "host_parts" {
  description = "modules/mesh-config's `hosts`: which parts share a host (of this region's, the core host is named after the region, an edge's host after the edge)."
  type        = map(list(string))
}

variable "subnet_id" {
  description = "The subnet the hosts are in: the region's core and edge addresses lie in it. It reaches the other regions' subnets privately (VPC peering or a transit gateway, which this module does not make) and the internet (to fetch the binary and the packages)."
  type        = string
}

variable "lb_subnets" {
  description = "The public load balancers' subnets, each with the Elastic IP the storefront's and DNS's load balancer answers at, and the one the cache's answers at when the region has a cache (the caller makes them, so that the zone and the router can name them before the load balancers exist)."
  type = list(object({
    subnet_id         = string
    allocation_id     = string
    cdn_allocation_id = optional(string)
  }))

  validation {
    condition     = length(var.lb_subnets) > 0
    error_message = "The load balancer needs at least one subnet."
  }
}

variable "ami" {
  description = "The hosts' image (Debian 12 or later, amd64, with cloud-init); by default the newest Debian 12 from Debian's own account."
  type        = string
  default     = null
}

variable "instance_types" {
  description = "EC2 instance types for the core host and the edge hosts (amd64, as the binary)."
  type = object({
    core = optional(string, "m7i.large")
    edge = optional(string, "c7i.large")
  })
  default = {}
}

variable "data_gb" {
  description = "The data disk of each host (encrypted gp3, kept when its host is replaced): GiB for a core (store, log, keys) and for an edge (outbox, keys)."
  type = object({
    core = optional(number, 100)
    edge = optional(number, 20)
  })
  default = {}
}

variable "binary" {
  description = "The tradewind release every host runs: its HTTPS URL and SHA-256. A change replaces this region's hosts, one region per apply in a rolling upgrade (README)."
  type = object({
    url    = string
    sha256 = string
  })
}

variable "secrets" {
  description = "Each host's secret (by host name: the region's name for the core host, each edge's own): the ARN of an AWS Secrets Manager secret in this region holding the host's files (examples/aws/bundle.sh). Only that host's role may read it."
  type        = map(string)
}

variable "ops" {
  description = "The account the drills use over ssh on every host (see modules/host-config)."
  type = object({
    user     = optional(string, "tradewind-ops")
    ssh_keys = list(string)
  })
}

variable "admin_cidrs" {
  description = "Who may reach the cores' admin APIs and the routers' HTTPS APIs (and, with ops_cidrs, ssh)."
  type        = list(string)
}

variable "ops_cidrs" {
  description = "Who may ssh to the hosts (the drills' and operators' machines)."
  type        = list(string)
}

variable "ports" {
  description = "The parts' ports, as given to modules/mesh-config."
  type = object({
    admin       = number
    raft        = number
    edge        = number
    dns         = number
    router_http = number
    cdn         = number
    cdn_admin   = number
  })
}

variable "interface" {
  description = "The hosts' network interface (where the drills slow links)."
  type        = string
  default     = "ens5"
}
