-- openkb state database: the compile hook an intent started.
-- Applied once, in one transaction, by src/state/schema.rs. Never edit a shipped migration.

-- A compile hook (compile_command) runs in its own process group while an add or compile
-- intent is open. Its process group id and the token put in its environment
-- (OPENKB_HOOK_TOKEN) are recorded here as soon as it starts, so that recovery can kill what
-- is left of a hook whose openkb process died, before it rolls the operation back. The token
-- tells the hook's processes from unrelated ones that later reuse the id.
ALTER TABLE intents ADD COLUMN hook_pgid INTEGER CHECK (hook_pgid IS NULL OR hook_pgid > 1);
ALTER TABLE intents ADD COLUMN hook_token TEXT;
