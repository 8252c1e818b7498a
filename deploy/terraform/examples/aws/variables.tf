variable "regions" {
  description = "The three regions, in Raft node-id order (the first is node 1): each one's AWS region, the subnet of its hosts (with its core's and edges' private addresses in it), the public subnets of its load balancer, and where its shoppers are (as modules/mesh-config takes them)."
  type = list(object({
    name          = string
    aws_region    = string
    subnet_id     = string
    lb_subnet_ids = list(string)
    address       = string
    latitude      = number
    longitude     = number
    countries     = optional(list(string), [])
    fallback      = optional(list(string), [])
    edges = list(object({
      name    = string
      address = string
    }))
  }))

  validation {
    # One provider per region, and Terraform gives a module its provider by name: three.
    condition     = length(var.regions) == 3
    error_message = "This example deploys three regions (a group of five needs two more provider blocks and module calls)."
  }
}

variable "zone" {
  description = "The shop's DNS zone (shop.example.com), delegated to the routers."
  type        = string
}

variable "parent_zone_id" {
  description = "The Route 53 hosted zone of the zone's parent (example.com), where the delegation (NS) and its glue (the routers' addresses) are written."
  type        = string
}

variable "binary" {
  description = "The tradewind release the hosts run (HTTPS URL and SHA-256). Changing it replaces hosts: apply one region at a time (README, rolling upgrade)."
  type = object({
    url    = string
    sha256 = string
  })
}

variable "secrets" {
  description = "The ARN of each host's secret in AWS Secrets Manager, by host name (each region's name for its core host, each edge's name), in that host's AWS region: bundle.sh makes each one's content."
  type        = map(string)
}

variable "purge_token_sha256" {
  description = "The digest of the token the edges purge their region's CDN cache with (`tradewind token new`; the token goes in each edge's secret as `purge-token`, bundle.sh). Null: no caches."
  type        = string
  default     = null
}

variable "asset_origin" {
  description = "The asset origin the caches serve /assets/ from (https://..., the seller's image store); null: none."
  type        = string
  default     = null
}

variable "admin_token_sha256" {
  description = "The digest of the admin token (`tradewind token new`); the token itself stays out of Terraform."
  type        = string
}

variable "admin_token_file" {
  description = "Where the admin token is kept on the operator's machine (a 0600 file), for the mesh description."
  type        = string
  default     = null
}

variable "ca_file" {
  description = "The deployment's CA on the operator's machine (`certs/ca.pem` of `tradewind certs init`), for the mesh description."
  type        = string
  default     = null
}

variable "identity_dir" {
  description = "The identity provider's directory on the operator's machine (`tradewind token shopper --dir`), whose JWKS the edges trust: the drills sign their shoppers' tokens with it. Null when the seller's own provider issues them."
  type        = string
  default     = null
}

variable "shoppers" {
  description = "The identity provider whose tokens the storefronts trust (its JWKS travels in each edge's secret)."
  type = object({
    issuer   = string
    audience = string
  })
}

variable "residency" {
  description = "Home region per country and cipher suite per region, as modules/mesh-config takes them."
  type = object({
    homes  = optional(map(string), {})
    suites = optional(map(string), {})
  })
  default = {}
}

variable "ports" {
  description = "The parts' ports on their hosts (shoppers use 443 and resolvers 53, at the load balancers)."
  type = object({
    admin       = optional(number, 7101)
    raft        = optional(number, 7102)
    edge        = optional(number, 7111)
    dns         = optional(number, 7053)
    router_http = optional(number, 7054)
    cdn         = optional(number, 7121)
    cdn_admin   = optional(number, 7122)
  })
  default = {}
}

variable "admin_cidrs" {
  description = "Who may reach the cores' admin APIs and the routers' APIs (the operators' networks)."
  type        = list(string)
}

variable "ops_cidrs" {
  description = "Who may ssh to the hosts (the operators' and drills' machines)."
  type        = list(string)
}

variable "ops" {
  description = "The ssh account on every host that the drills use (it may start, stop and kill parts and shape links, nothing else as root)."
  type = object({
    user     = optional(string, "tradewind-ops")
    ssh_keys = list(string)
  })
}
