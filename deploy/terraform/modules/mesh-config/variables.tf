variable "regions" {
  description = "The core regions, in Raft node-id order (the first is node 1): where each region's core and edges listen, where its shoppers are, and where the router sends them when it is down. 3 or 5 regions."
  type = list(object({
    name = string
    # Its Raft node id: fixed for the region's life (its log and store are kept under it).
    # By default its place in the list (1 for the first), which then must not change.
    node_id = optional(number)
    # An IPv4 address the region's core listens on.
    address   = string
    latitude  = number
    longitude = number
    # Countries (ISO 3166 alpha-2) whose shoppers the router sends here.
    countries = optional(list(string), [])
    # Regions tried, in order, when every edge of this one is down (nearest first otherwise).
    fallback = optional(list(string), [])
    # Where shoppers reach the region's CDN cache, which the router answers the asset names
    # with (its load balancer's addresses in a cloud); by default the region's address.
    cdn_public_addresses = optional(list(string))
    edges = list(object({
      name    = string
      address = string
      # Where shoppers reach it, which the router answers with (its load balancer's addresses
      # in a cloud); by default its own address.
      public_addresses = optional(list(string))
    }))
  }))

  validation {
    condition     = contains([3, 5], length(var.regions))
    error_message = "A group of core regions has 3 or 5 voters."
  }
  validation {
    condition     = alltrue([for r in var.regions : length(r.edges) > 0])
    error_message = "Every region needs at least one edge."
  }
  validation {
    # Parts are named after these (their files, certificates and keys), beside the router, the
    # fault proxy, the asset origin and each region's cache (REGION-cdn): no two may share a name.
    condition = length(distinct(concat(["geo-router", "fault-proxy", "assets"], flatten([
      for r in var.regions : concat([r.name, "${r.name}-cdn"], [for e in r.edges : e.name])
    ])))) == 3 + length(flatten([for r in var.regions : concat([r.name, "${r.name}-cdn"], [for e in r.edges : e.name])]))
    error_message = "Region and edge names must all differ, from each other, from each region's cache (REGION-cdn) and from geo-router, fault-proxy and assets."
  }
  validation {
    condition = alltrue(flatten([for r in var.regions : [
      for n in concat([r.name], [for e in r.edges : e.name]) : can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", n))
    ]]))
    error_message = "Region and edge names are lowercase letters, digits and inner dashes, at most 63 (they name certificates and files)."
  }
  validation {
    condition = length(distinct([for i, r in var.regions : coalesce(r.node_id, i + 1)])) == length(var.regions) && alltrue([
      for i, r in var.regions : coalesce(r.node_id, i + 1) >= 1 && floor(coalesce(r.node_id, i + 1)) == coalesce(r.node_id, i + 1)
    ])
    error_message = "Node ids are positive whole numbers, one per region."
  }
  validation {
    condition = alltrue(flatten([for r in var.regions : [
      for a in concat([r.address], r.cdn_public_addresses == null ? [] : r.cdn_public_addresses, flatten([for e in r.edges : concat([e.address], e.public_addresses == null ? [] : e.public_addresses)])) : can(regex("^[0-9]+(\\.[0-9]+){3}$", a)) && can(cidrhost("${a}/32", 0))
    ]]))
    error_message = "Addresses are IPv4 addresses (they are written as address:port)."
  }
  validation {
    condition     = length(distinct(flatten([for r in var.regions : r.countries]))) == length(flatten([for r in var.regions : r.countries]))
    error_message = "A country's shoppers go to one region: no country may be listed twice."
  }
}

variable "ports" {
  description = "The ports each part listens on, at its region's address (the router's at router_address)."
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

variable "cdn" {
  description = "A CDN cache (`tradewind cdn`) in every region, at the region's address: in front of its edges (storefront reads, purged by the edges as the feed changes what they showed) and of the asset origin, whose names the router answers with the nearest healthy cache. Null: no caches."
  type = object({
    # The asset origin (https://...): what the caches serve under /assets/; null: none. Its
    # certificate is checked against the system's roots, or against asset_origin_ca (a path
    # on the node) when given.
    asset_origin    = optional(string)
    asset_origin_ca = optional(string)
    # The asset names, relative to the zone.
    asset_names = optional(list(string), ["assets"])
    # The digest of the token the edges purge with (`tradewind token new`; scope purge alone),
    # and where each edge finds the token itself (a path on the node).
    purge_token_sha256 = string
    purge_token_file   = string
    # What each cache's disk tier holds at most.
    disk_bytes = optional(number, 1073741824)
    # Networks a cache reaches its edges from besides its region's address (whose
    # X-Forwarded-For the edges believe): 127.0.0.1/32 where every region is on one machine's
    # loopback, which connects from there.
    forwarded_from = optional(list(string), [])
  })
  default = null

  validation {
    condition     = var.cdn == null || can(regex("^[0-9a-f]{64}$", var.cdn.purge_token_sha256))
    error_message = "The purge token's digest is 64 lowercase hex digits (a SHA-256)."
  }
  validation {
    condition     = var.cdn == null || try(startswith(var.cdn.asset_origin, "https://"), true)
    error_message = "The asset origin is an https:// URL."
  }
}

variable "routes" {
  description = "Where a region's core and edges reach another region's core, when not at its own address: routes[from][to] = \"address:port\" (a proxy or tunnel between them, such as the fault proxy the local example puts on every link)."
  type        = map(map(string))
  default     = {}
}

variable "router_address" {
  description = "Where the geo-router listens (DNS over UDP and TCP, and its HTTPS API)."
  type        = string
  default     = "127.0.0.1"
}

variable "nameservers" {
  description = "The zone's name servers, as the zone's NS records name them (each a name in the zone and its addresses): the routers."
  type = list(object({
    name      = string
    addresses = list(string)
  }))
  default = [{ name = "ns1", addresses = ["127.0.0.1"] }]
}

variable "zone" {
  description = "The shop's DNS zone, which the geo-router answers for."
  type        = string
  default     = "shop.tradewind.test"
}

variable "secrets_dir" {
  description = "Where every node finds the deployment's CA, its own certificate and key, the deployment secret and the region keys (`tradewind certs init` makes them): a path on the node. The secrets themselves never pass through Terraform."
  type        = string
}

variable "keys_dir" {
  description = "Where every core and edge keeps its region keys and keeping keys (`tradewind keys`), which an erasure destroys: a path on the node's data disk where the secrets themselves live in memory; by default secrets_dir/keys."
  type        = string
  default     = null
}

variable "data_dir" {
  description = "Under which each part keeps its data, in a directory named after it."
  type        = string
}

variable "admin_token_sha256" {
  description = "Digests of the admin tokens the cores accept (`tradewind token new`, or `tradewind token hash` of a token kept in a secret store): the tokens themselves stay out of Terraform."
  type        = list(string)

  validation {
    condition     = length(var.admin_token_sha256) > 0 && alltrue([for d in var.admin_token_sha256 : can(regex("^[0-9a-f]{64}$", d))])
    error_message = "Each admin token digest is 64 lowercase hex digits (a SHA-256)."
  }
}

variable "shoppers" {
  description = "The identity provider whose tokens the storefronts trust: its issuer, the audience, and the JWKS file on each edge."
  type = object({
    issuer    = string
    audience  = string
    jwks_file = string
  })
}

variable "residency" {
  description = "Which region is home to each country's shoppers (their personal data is sealed for it alone; a country not listed is at home where its order is placed), and the cipher suite of regions that use another than AES-256-GCM."
  type = object({
    homes  = optional(map(string), {})
    suites = optional(map(string), {})
  })
  default = {}
}

variable "timing" {
  description = "Raft timing (milliseconds), for the round trips between the regions; the defaults suit round trips up to 250 ms."
  type = object({
    heartbeat_ms           = optional(number, 300)
    election_min_ms        = optional(number, 350)
    election_max_ms        = optional(number, 450)
    snapshot_every_entries = optional(number, 10000)
    keep_entries           = optional(number, 2000)
  })
  default = {}
}
