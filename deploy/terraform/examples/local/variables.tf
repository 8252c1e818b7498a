variable "tradewind" {
  description = "The tradewind binary every part runs (an absolute path, or a name on PATH)."
  type        = string
  default     = "tradewind"
}

variable "state_dir" {
  description = "Where the mesh keeps its secrets, configs, data, logs and pid files (made if missing; kept by destroy)."
  type        = string
  default     = ".mesh"
}

variable "admin_token_sha256" {
  description = "The digest of the admin token the cores accept (`tradewind token new` prints both; keep the token itself out of Terraform)."
  type        = string
}

variable "admin_token_file" {
  description = "Where the admin token is kept (a 0600 file), for the mesh description that `tradewind status` reads; null leaves it out."
  type        = string
  default     = null
}

variable "ports" {
  description = "The parts' ports (see modules/mesh-config); by default clear of the demo's."
  type = object({
    admin       = optional(number, 9101)
    raft        = optional(number, 9102)
    edge        = optional(number, 9111)
    dns         = optional(number, 9053)
    router_http = optional(number, 9054)
    cdn         = optional(number, 9121)
    cdn_admin   = optional(number, 9122)
  })
  default = {}
}

variable "purge_token_sha256" {
  description = "The digest of the token the edges purge their region's cache with (`tradewind token new`); null deploys no caches and no asset origin."
  type        = string
  default     = null
}

variable "purge_token_file" {
  description = "Where that token is kept (a 0600 file the edges read)."
  type        = string
  default     = null

  validation {
    condition     = var.purge_token_file != null || var.purge_token_sha256 == null
    error_message = "With a purge token's digest, give the file that holds the token too."
  }
}

variable "assets_port" {
  description = "Where the asset origin (the sample catalog's product images, `tradewind assets`) listens, on 127.0.0.1."
  type        = number
  default     = 9120
}

variable "fault_proxy" {
  description = "The fault proxy's ports: its control API (on 127.0.0.1), and the first of the ports its links listen on (one per region reached, at the reaching region's address)."
  type = object({
    api   = optional(number, 9050)
    links = optional(number, 9130)
  })
  default = {}
}
