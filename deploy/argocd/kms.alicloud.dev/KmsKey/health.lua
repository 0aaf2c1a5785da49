-- Health of a kms.alicloud.dev/KmsKey (kmskey-operator) for Argo CD, read from its status conditions only.
-- The operator derives kstatus's Stalled and Reconciling conditions from Synced, so this check and kstatus
-- (Flux) agree:
--   Degraded     Stalled=True: refused for good until the spec, the credentials or the key change
--   Suspended    Synced=False with reason Paused (the kms.alicloud.dev/paused annotation)
--   Progressing  no status yet, Reconciling=True (a transient failure being retried, with its message), a
--                generation the operator has not observed yet, or Ready/Synced not yet True
--   Healthy      Ready=True and Synced=True for the current generation
local hs = {}

local function condition(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for kmskey-operator to reconcile the key"
  return hs
end

local conditions = obj.status.conditions
local generation = obj.metadata.generation

-- A condition written for an older generation says nothing about the spec as it is now.
local function current(c)
  return c ~= nil and (generation == nil or c.observedGeneration == nil or c.observedGeneration == generation)
end

local stalled = condition(conditions, "Stalled")
if current(stalled) and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end

local synced = condition(conditions, "Synced")
if current(synced) and synced.status == "False" and synced.reason == "Paused" then
  hs.status = "Suspended"
  hs.message = synced.message
  return hs
end

local reconciling = condition(conditions, "Reconciling")
if current(reconciling) and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.message
  return hs
end

if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for kmskey-operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition(conditions, "Ready")
if ready ~= nil and ready.status == "True" and synced ~= nil and synced.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end

hs.status = "Progressing"
if ready ~= nil and ready.status ~= "True" then
  hs.message = ready.message
elseif synced ~= nil and synced.status ~= "True" then
  hs.message = synced.message
else
  hs.message = "Waiting for kmskey-operator to reconcile the key"
end
return hs
