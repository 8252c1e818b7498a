# One region of the mesh on AWS: a host for its core (with a geo-router, and the region's CDN
# cache when the mesh has caches, beside it) and one per edge, each with an encrypted data disk that outlives it; firewalls that open only what each
# part needs; a network load balancer at fixed addresses for shoppers (HTTPS to the edges) and
# for the zone's resolvers (DNS over UDP and TCP to the router). Every host is configured by
# modules/host-config (cloud-init: hardened systemd units, secrets from Secrets Manager into
# memory, the drills' commands). Called once per region, each with its region's provider.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

data "aws_subnet" "hosts" {
  id = var.subnet_id
}

data "aws_vpc" "hosts" {
  id = data.aws_subnet.hosts.vpc_id
}

data "aws_ami" "debian" {
  count       = var.ami == null ? 1 : 0
  most_recent = true
  owners      = ["136693071363"] # Debian's own account
  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }
  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

locals {
  name = var.region.name
  # Each host: its address, kind and the parts it runs.
  hosts = merge(
    { (local.name) = { kind = "core", address = var.region.address } },
    { for e in var.region.edges : e.name => { kind = "edge", address = e.address } },
  )
  # The other regions' hosts: what reaches this region's core over QUIC (Raft, and edges
  # writing to any region's core), besides its own edges.
  peers = distinct(concat(
    flatten([for r, addrs in var.hosts : addrs if r != local.name]),
    [for e in var.region.edges : e.address],
  ))
  ami = var.ami != null ? var.ami : data.aws_ami.debian[0].id
  # The region's cache (beside its core), when the mesh has caches.
  cdn = contains(keys(var.parts), "${local.name}-cdn")
}

module "host" {
  source   = "../host-config"
  for_each = local.hosts

  host        = each.key
  parts       = { for n in var.host_parts[each.key] : n => { kind = var.parts[n].kind, config = var.parts[n].config } }
  regions     = var.hosts
  binary      = var.binary
  secret      = { arn = var.secrets[each.key], region = split(":", var.secrets[each.key])[3] }
  data_device = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${replace(aws_ebs_volume.data[each.key].id, "-", "")}"
  interface   = var.interface
  ops         = var.ops
  paths       = var.paths
}

# --- Firewalls: nothing is open that a part does not serve.

resource "aws_security_group" "core" {
  name_prefix = "tradewind-${local.name}-core-"
  description = "Tradewind core and geo-router of ${local.name}"
  vpc_id      = data.aws_subnet.hosts.vpc_id
}

resource "aws_security_group" "edge" {
  name_prefix = "tradewind-${local.name}-edge-"
  description = "Tradewind edges of ${local.name}"
  vpc_id      = data.aws_subnet.hosts.vpc_id
}

locals {
  # Every rule: its group, protocol, port and source.
  rules = concat(
    # Raft between cores, and edges writing to cores: QUIC from those hosts alone.
    [for a in local.peers : { group = "core", protocol = "udp", port = var.ports.raft, from = "${a}/32", why = "QUIC from ${a}" }],
    # DNS from any resolver (the load balancer keeps their addresses).
    [for p in ["udp", "tcp"] : { group = "core", protocol = p, port = var.ports.dns, from = "0.0.0.0/0", why = "DNS" }],
    # The router's API: its operators, and the load balancer's health checks from the VPC.
    [for c in concat(var.admin_cidrs, [data.aws_vpc.hosts.cidr_block]) : { group = "core", protocol = "tcp", port = var.ports.router_http, from = c, why = "router API" }],
    [for c in var.admin_cidrs : { group = "core", protocol = "tcp", port = var.ports.admin, from = c, why = "admin API" }],
    # The cache: shoppers through its load balancer; its admin API for the operators, the
    # region's edges (purges) and the load balancer's health checks.
    local.cdn ? [{ group = "core", protocol = "tcp", port = var.ports.cdn, from = "0.0.0.0/0", why = "CDN cache" }] : [],
    # (Every region's router checks every cache's health: the other core hosts too.)
    local.cdn ? [for c in distinct(concat(
      var.admin_cidrs, [data.aws_vpc.hosts.cidr_block], [for e in var.region.edges : "${e.address}/32"],
      [for r, addrs in var.hosts : "${addrs[0]}/32" if r != local.name],
    )) : { group = "core", protocol = "tcp", port = var.ports.cdn_admin, from = c, why = "CDN admin API" }] : [],
    # The storefront from anywhere (shoppers, through the load balancer, and the routers'
    # health checks from every region).
    [{ group = "edge", protocol = "tcp", port = var.ports.edge, from = "0.0.0.0/0", why = "storefront" }],
    flatten([for g in ["core", "edge"] : [for c in var.ops_cidrs : { group = g, protocol = "tcp", port = 22, from = c, why = "ssh" }]]),
  )
}

resource "aws_vpc_security_group_ingress_rule" "in" {
  for_each = { for r in local.rules : "${r.group} ${r.protocol}/${r.port} ${r.from}" => r }

  security_group_id = each.value.group == "core" ? aws_security_group.core.id : aws_security_group.edge.id
  ip_protocol       = each.value.protocol
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.from
  description       = each.value.why
}

# Out: Secrets Manager, the binary's and the packages' servers, the other regions.
resource "aws_vpc_security_group_egress_rule" "out" {
  for_each = { core = aws_security_group.core.id, edge = aws_security_group.edge.id }

  security_group_id = each.value
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
  description       = "anywhere"
}

# --- Each host may read its own secret, and nothing else.

resource "aws_iam_role" "host" {
  for_each    = local.hosts
  name_prefix = "tradewind-${substr(each.key, 0, 20)}-"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "secret" {
  for_each = local.hosts
  name     = "own-secret"
  role     = aws_iam_role.host[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = "secretsmanager:GetSecretValue"
      Resource = var.secrets[each.key]
    }]
  })
}

resource "aws_iam_instance_profile" "host" {
  for_each    = local.hosts
  name_prefix = "tradewind-${substr(each.key, 0, 20)}-"
  role        = aws_iam_role.host[each.key].name
}

# --- Hosts and their data disks.

resource "aws_ebs_volume" "data" {
  for_each          = local.hosts
  availability_zone = data.aws_subnet.hosts.availability_zone
  size              = each.value.kind == "core" ? var.data_gb.core : var.data_gb.edge
  type              = "gp3"
  encrypted         = true
  # The store, the outbox and the keys: a disk of its own, so that a host replaced (an
  # upgrade) finds its data again. `terraform destroy` deletes it (back up first: README).
  tags = { Name = "tradewind-${each.key}-data" }
}

resource "aws_instance" "host" {
  for_each = local.hosts

  ami                    = local.ami
  instance_type          = each.value.kind == "core" ? var.instance_types.core : var.instance_types.edge
  subnet_id              = var.subnet_id
  private_ip             = each.value.address
  vpc_security_group_ids = [each.value.kind == "core" ? aws_security_group.core.id : aws_security_group.edge.id]
  iam_instance_profile   = aws_iam_instance_profile.host[each.key].name
  # (Compressed: EC2 takes 16 KiB of user data, cloud-init reads gzip.)
  user_data_base64 = module.host[each.key].user_data_gzip
  # A new binary or config is a new host (on the same data disk): one region per apply.
  user_data_replace_on_change = true

  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  root_block_device {
    volume_type = "gp3"
    encrypted   = true
  }
  tags = { Name = "tradewind-${each.key}" }
}

resource "aws_volume_attachment" "data" {
  for_each    = local.hosts
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data[each.key].id
  instance_id = aws_instance.host[each.key].id
  # A host replaced (an upgrade) is stopped first, its parts with SIGTERM, so that its disk is
  # never taken from under a running store.
  stop_instance_before_detaching = true
}

# --- The public load balancer: HTTPS to the edges, DNS to the router, at fixed addresses.

resource "aws_lb" "public" {
  name_prefix                      = "tw-"
  load_balancer_type               = "network"
  internal                         = false
  enable_cross_zone_load_balancing = true

  dynamic "subnet_mapping" {
    for_each = var.lb_subnets
    content {
      subnet_id     = subnet_mapping.value.subnet_id
      allocation_id = subnet_mapping.value.allocation_id
    }
  }
  tags = { Name = "tradewind-${local.name}" }
}

resource "aws_lb_target_group" "dns" {
  name_prefix = "twdns-"
  port        = var.ports.dns
  protocol    = "TCP_UDP"
  vpc_id      = data.aws_subnet.hosts.vpc_id
  target_type = "instance"

  health_check {
    protocol = "HTTPS"
    port     = tostring(var.ports.router_http)
    path     = "/v1/health"
  }
}

resource "aws_lb_target_group" "storefront" {
  name_prefix = "twweb-"
  port        = var.ports.edge
  protocol    = "TCP"
  vpc_id      = data.aws_subnet.hosts.vpc_id
  target_type = "instance"
  # An edge stopping (SIGTERM) sends its outbox first: give it the time.
  deregistration_delay = 30

  health_check {
    protocol = "HTTPS"
    path     = "/healthz"
  }
}

resource "aws_lb_listener" "dns" {
  load_balancer_arn = aws_lb.public.arn
  port              = 53
  protocol          = "TCP_UDP"
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.dns.arn
  }
}

resource "aws_lb_listener" "storefront" {
  load_balancer_arn = aws_lb.public.arn
  port              = 443
  protocol          = "TCP"
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.storefront.arn
  }
}

# The region's cache at addresses of its own (the router answers the asset names with them):
# TCP 443 to the cache beside the core.
resource "aws_lb" "cdn" {
  count                            = local.cdn ? 1 : 0
  name_prefix                      = "twcdn-"
  load_balancer_type               = "network"
  internal                         = false
  enable_cross_zone_load_balancing = true

  dynamic "subnet_mapping" {
    for_each = var.lb_subnets
    content {
      subnet_id     = subnet_mapping.value.subnet_id
      allocation_id = subnet_mapping.value.cdn_allocation_id
    }
  }
  tags = { Name = "tradewind-${local.name}-cdn" }
}

resource "aws_lb_target_group" "cdn" {
  count       = local.cdn ? 1 : 0
  name_prefix = "twcdn-"
  port        = var.ports.cdn
  protocol    = "TCP"
  vpc_id      = data.aws_subnet.hosts.vpc_id
  target_type = "instance"

  health_check {
    protocol = "HTTPS"
    port     = tostring(var.ports.cdn_admin)
    path     = "/healthz"
  }
}

resource "aws_lb_listener" "cdn" {
  count             = local.cdn ? 1 : 0
  load_balancer_arn = aws_lb.cdn[0].arn
  port              = 443
  protocol          = "TCP"
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.cdn[0].arn
  }
}

resource "aws_lb_target_group_attachment" "cdn" {
  count            = local.cdn ? 1 : 0
  target_group_arn = aws_lb_target_group.cdn[0].arn
  target_id        = aws_instance.host[local.name].id
}

resource "aws_lb_target_group_attachment" "dns" {
  target_group_arn = aws_lb_target_group.dns.arn
  target_id        = aws_instance.host[local.name].id
}

resource "aws_lb_target_group_attachment" "storefront" {
  for_each         = { for e in var.region.edges : e.name => e }
  target_group_arn = aws_lb_target_group.storefront.arn
  target_id        = aws_instance.host[each.key].id
}
