import sys, sushy
from sushy import auth
url, user, pw, sid = sys.argv[1:5]
s = sushy.Sushy(url + '/redfish/v1', auth=auth.SessionAuth(username=user, password=pw))
col = s.get_system_collection()
print('members', sorted(col.members_identities))
system = s.get_system('/redfish/v1/Systems/' + sid)
print('power', system.power_state)
print('allowed', sorted(str(x) for x in system.get_allowed_reset_system_values()))
system.set_system_boot_options(sushy.BootSource.PXE, enabled=sushy.BootSourceOverrideEnabled.ONCE, mode=sushy.BootSourceOverrideMode.UEFI)
system.refresh()
print('boot', system.boot.target, system.boot.enabled, system.boot.mode)
system.reset_system(sushy.ResetType.ON)
system.refresh()
print('power', system.power_state)
print('boot', system.boot.target, system.boot.enabled)
system.reset_system(sushy.ResetType.FORCE_OFF)
system.refresh()
print('power', system.power_state)
