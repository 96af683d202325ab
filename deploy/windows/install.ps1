#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Installs or upgrades transcriber on this Windows machine as Windows services.

.DESCRIPTION
    Creates a virtual environment under -InstallDir, installs the package from -Source, writes
    .env from .env.example when there is none (an existing .env is never overwritten), migrates
    the database and registers these services with WinSW 2.12.0 (verified by its SHA-256):

        transcriber-worker   unless -NoWorker
        transcriber-beat     unless -NoBeat      (exactly ONE beat in the whole deployment)
        transcriber-watch    unless -NoWatcher
        transcriber-flower   with -WithFlower
        transcriber-metrics  with -WithMetrics   (Prometheus exporter; one per deployment is enough)

    The install folder gets an ACL of its own: Administrators and SYSTEM full control, the
    services' account (-ServiceAccount) read and execute, and change on data, logs and models;
    .env readable by them only. Every run sets it again and removes any other entry.

    Safe to re-run (that is how you upgrade): it stops the services, upgrades the package,
    rewrites the service configuration and keeps .env. The options of the last run are kept in
    services\install-options.json; an option given now wins. The services are left stopped:
    start them with restart.ps1. Full guide: docs\windows.md.

.EXAMPLE
    .\install.ps1
    First machine: worker, beat and watcher in C:\app, as LocalSystem.

.EXAMPLE
    .\install.ps1 -NoBeat -NoWatcher
    An additional worker machine (one model process per core).

.EXAMPLE
    .\install.ps1 -ServiceAccount 'CORP\gmsa-transcriber$'
    Run every service as a group managed service account (network shares); 'CORP\svc-transcriber'
    asks for its password once (or pass -ServiceAccountCredential).

.EXAMPLE
    .\install.ps1 -WithMetrics
    Also serve Prometheus metrics (METRICS_ADDRESS:METRICS_PORT in .env, 127.0.0.1:9808 by default).

.EXAMPLE
    .\install.ps1 -WinSWPath 'D:\offline\WinSW-x64.exe' -Wheelhouse 'D:\offline\wheels'
    A server without internet access.
#>
[CmdletBinding()]
param(
    # Where the venv, .env, data, logs and service wrappers go.
    [string]$InstallDir = 'C:\app',
    # python.exe to build the venv with (64-bit, 3.11+). Default: py -3.11, py -3, then python on PATH.
    [string]$Python = '',
    # The transcriber source folder (holds pyproject.toml). Default: two levels up from this script.
    [string]$Source = '',
    # threads: one model process per core (or -WorkerConcurrency), the faster layout. solo: one at a time.
    [ValidateSet('solo', 'threads')]
    [string]$WorkerPool = 'threads',
    # Model processes of the threads pool; 0: one per core, up to 8 (the worker decides when it starts).
    [ValidateRange(0, 64)]
    [int]$WorkerConcurrency = 0,
    # Beat and the watcher run on one machine only; -NoWorker for a machine that only runs them.
    [switch]$NoWorker,
    [switch]$NoBeat,
    [switch]$NoWatcher,
    [switch]$WithFlower,
    [ValidateRange(1, 65535)]
    [int]$FlowerPort = 5555,
    # `transcriber metrics`: every figure comes from the database, so one machine of the deployment runs it.
    [switch]$WithMetrics,
    # The account every service logs on as: LocalSystem, LocalService, NetworkService, Virtual (NT SERVICE\
    # transcriber-<role>, one per service), DOMAIN\gmsa$ (group managed service account) or DOMAIN\user.
    [string]$ServiceAccount = 'LocalSystem',
    # The password of a DOMAIN\user account (asked for when needed and not given; never stored).
    [pscredential]$ServiceAccountCredential,
    # A local copy of WinSW-x64.exe v2.12.0 (offline servers); default: download it. Either is verified.
    [string]$WinSWPath = '',
    # A folder of wheels to install from instead of PyPI (offline servers).
    [string]$Wheelhouse = ''
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # Invoke-WebRequest in 5.1 is many times slower with a progress bar

$Utf8 = New-Object System.Text.UTF8Encoding -ArgumentList $false  # no BOM: .env and XML are read by other tools
# What differs from one machine to the next is decided by winsvc.py (tested on Linux); this script does it.
$Winsvc = Join-Path $PSScriptRoot 'winsvc.py'

function Write-Step([string]$Text) {
    Write-Host ''
    Write-Host "==> $Text" -ForegroundColor Cyan
}

function Get-FullPath([string]$Path) {
    $full = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($Path)
    # A trailing backslash would escape the closing quote of a native command's argument.
    if ($full.Length -gt 3) { $full = $full.TrimEnd('\') }
    return $full
}

function Invoke-Program {
    <#
    Runs a program, shows its output (unless -Quiet) and returns its ExitCode and Output lines.
    Its stderr is read as plain text: Windows PowerShell 5.1 turns each stderr line of a native
    program into an error record, which $ErrorActionPreference = 'Stop' would make fatal, and pip
    and transcriber both log to stderr.
    #>
    param(
        [Parameter(Mandatory = $true)][string]$FilePath,
        [string[]]$ArgumentList = @(),
        [switch]$Quiet,
        [string]$FailureMessage = ''
    )
    if (-not (Get-Command -Name $FilePath -ErrorAction SilentlyContinue)) { throw "$FilePath not found" }
    $lines = New-Object System.Collections.Generic.List[string]
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        & $FilePath @ArgumentList 2>&1 | ForEach-Object {
            $line = "$_"
            $lines.Add($line)
            if (-not $Quiet) { Write-Host "    $line" }
        }
        $code = $LASTEXITCODE
    }
    finally {
        $ErrorActionPreference = $saved
    }
    if ($FailureMessage -and $code -ne 0) { throw "$FailureMessage (exit code $code)" }
    return [pscustomobject]@{ ExitCode = $code; Output = $lines }
}

function Find-Python([string]$Requested) {
    # The full path of a 64-bit Python 3.11+; ctranslate2 (faster-whisper) has 64-bit wheels only.
    $candidates = New-Object System.Collections.Generic.List[object]
    if ($Requested) {
        $candidates.Add(@($Requested))
    }
    else {
        $launcher = Get-Command -Name 'py.exe' -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
        if ($launcher) {
            $candidates.Add(@($launcher.Source, '-3.11'))
            $candidates.Add(@($launcher.Source, '-3'))
        }
        $onPath = Get-Command -Name 'python.exe' -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
        if ($onPath) { $candidates.Add(@($onPath.Source)) }
    }
    $probe = 'import sys, platform; print(sys.executable); print(*sys.version_info[:2], sep=chr(46)); print(platform.architecture()[0])'
    foreach ($candidate in $candidates) {
        $arguments = @($candidate | Select-Object -Skip 1) + @('-c', $probe)
        try {
            $result = Invoke-Program -FilePath $candidate[0] -ArgumentList $arguments -Quiet
        }
        catch {
            continue  # not there, or not runnable
        }
        # The Microsoft Store's python.exe alias exits 9009 here, so it is skipped.
        if ($result.ExitCode -ne 0 -or $result.Output.Count -lt 3) { continue }
        $exe, $version, $bits = $result.Output[$result.Output.Count - 3], $result.Output[$result.Output.Count - 2], $result.Output[$result.Output.Count - 1]
        if ([version]$version -ge [version]'3.11' -and $bits -eq '64bit') {
            Write-Host "    Python $version at $exe"
            if ($exe -like (Join-Path $env:SystemDrive 'Users\*')) {
                Write-Warning "$exe is a per-user Python: a service account other than LocalSystem may not be able to run it. Prefer Python installed 'for all users'."
            }
            return $exe
        }
        Write-Warning "$($candidate -join ' ') is Python $version $bits; 64-bit Python 3.11 or newer is needed"
    }
    throw "No 64-bit Python 3.11+ found. Install it from python.org ('Install for all users' and the py launcher), or pass -Python 'C:\path\to\python.exe'."
}

function Get-EnvSetting([string]$Name, [string]$Default) {
    # The last NAME=value line of .env (as the settings read it), without quotes; the default when absent or empty.
    $found = @(Select-String -LiteralPath $envFile -Pattern "^\s*$Name\s*=\s*(.*?)\s*$" | Select-Object -Last 1)
    if ($found.Count -eq 0) { return $Default }
    $value = ($found[0].Matches[0].Groups[1].Value -replace '\s+#.*$', '').Trim('"', "'")
    if ($value) { return $value } else { return $Default }
}

function Invoke-Winsvc {
    # Runs winsvc.py; its one-line error (a bad option, a WinSW that is not the pinned one) stops the install.
    param([string[]]$ArgumentList, [switch]$Quiet)
    $result = Invoke-Program -FilePath $planPython -ArgumentList (@($Winsvc) + $ArgumentList) -Quiet:$Quiet
    if ($result.ExitCode -ne 0) {
        $reason = @($result.Output | Where-Object { $_ -like 'error: *' } | Select-Object -Last 1)
        if ($reason.Count -eq 0) { $reason = @($result.Output | Select-Object -Last 1) }
        throw "$($reason -join '' -replace '^error: ', '')"
    }
    return $result
}

function Get-Plan([string[]]$DataFolders = @()) {
    # The options of this run, the services and the ACL steps, from winsvc.py plan.
    $request = @{ install_dir = $InstallDir; given = $given; options_file = $optionsFile
        data_folders = @($DataFolders); metrics_where = $metricsWhere }
    $in = Join-Path ([System.IO.Path]::GetTempPath()) "transcriber-plan-$PID.json"
    $out = "$in.out"
    [System.IO.File]::WriteAllText($in, ($request | ConvertTo-Json -Depth 6), $Utf8)
    try {
        $null = Invoke-Winsvc -ArgumentList @('plan', '--in', $in, '--out', $out) -Quiet
        return [System.IO.File]::ReadAllText($out, $Utf8) | ConvertFrom-Json
    }
    finally {
        Remove-Item -LiteralPath $in, $out -Force -ErrorAction SilentlyContinue
    }
}

function ConvertTo-Sid([string]$Grantee) {
    if ($Grantee.StartsWith('*')) { return $Grantee.Substring(1) }
    $account = New-Object System.Security.Principal.NTAccount -ArgumentList $Grantee
    return $account.Translate([System.Security.Principal.SecurityIdentifier]).Value
}

function Set-InstallAcl($Steps) {
    # Each step is one icacls call; a step with `only` then removes every other explicit entry of that path
    # (whoever could write there before, an open .env copied in by hand). A path not there yet is skipped.
    foreach ($step in @($Steps)) {
        if (-not (Test-Path -LiteralPath $step.path)) { continue }
        $arguments = @($step.path) + @($step.icacls)
        $null = Invoke-Program -FilePath 'icacls.exe' -ArgumentList $arguments -Quiet -FailureMessage "icacls $($arguments -join ' ') failed"
        if (-not $step.PSObject.Properties['only']) { continue }
        $allowed = @($step.only | ForEach-Object { ConvertTo-Sid $_ })
        foreach ($rule in @((Get-Acl -LiteralPath $step.path).Access | Where-Object { -not $_.IsInherited })) {
            $sid = $rule.IdentityReference.Translate([System.Security.Principal.SecurityIdentifier]).Value
            if ($allowed -notcontains $sid) {
                Write-Host "    removing the access of $($rule.IdentityReference) to $($step.path)"
                $null = Invoke-Program -FilePath 'icacls.exe' -ArgumentList @($step.path, '/remove:g', "*$sid", '/Q') -Quiet -FailureMessage "Could not remove $($rule.IdentityReference) from $($step.path)"
            }
        }
    }
}

function Get-WinSW([string]$LocalCopy, [string]$Destination) {
    # The pinned WinSW, kept in the services folder and verified on every run; each service gets a copy.
    if ($LocalCopy) {
        Copy-Item -LiteralPath (Get-FullPath $LocalCopy) -Destination $Destination -Force
    }
    elseif (Test-Path -LiteralPath $Destination) {
        try {
            $verdict = Invoke-Winsvc -ArgumentList @('winsw', $Destination) -Quiet
            Write-Host "    $($verdict.Output -join ' ')"
            return
        }
        catch {
            Write-Host "    $Destination is not the pinned WinSW ($($_.Exception.Message)); downloading it again"
            Remove-Item -LiteralPath $Destination -Force
        }
    }
    if (-not $LocalCopy) {
        Write-Host "    downloading $($plan.winsw.url)"
        [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
        $partial = "$Destination.download"
        try {
            Invoke-WebRequest -Uri $plan.winsw.url -OutFile $partial -UseBasicParsing
        }
        catch {
            throw "Cannot download WinSW ($($_.Exception.Message)). On a server without internet access, copy WinSW-x64.exe v$($plan.winsw.version) here and pass -WinSWPath."
        }
        Move-Item -LiteralPath $partial -Destination $Destination -Force
    }
    try {
        $verdict = Invoke-Winsvc -ArgumentList @('winsw', $Destination) -Quiet
    }
    catch {
        Remove-Item -LiteralPath $Destination -Force -ErrorAction SilentlyContinue  # never run an unverified wrapper
        throw
    }
    Unblock-File -LiteralPath $Destination
    Write-Host "    $($verdict.Output -join ' ')"
}

$LsaSource = @'
using System;
using System.ComponentModel;
using System.Runtime.InteropServices;
using System.Security.Principal;

public static class TranscriberLsa {
    [StructLayout(LayoutKind.Sequential)]
    struct LSA_UNICODE_STRING { public ushort Length; public ushort MaximumLength; public IntPtr Buffer; }
    [StructLayout(LayoutKind.Sequential)]
    struct LSA_OBJECT_ATTRIBUTES {
        public int Length; public IntPtr RootDirectory; public IntPtr ObjectName; public uint Attributes;
        public IntPtr SecurityDescriptor; public IntPtr SecurityQualityOfService;
    }
    [DllImport("advapi32.dll")]
    static extern uint LsaOpenPolicy(IntPtr systemName, ref LSA_OBJECT_ATTRIBUTES attributes, uint access, out IntPtr policy);
    [DllImport("advapi32.dll")]
    static extern uint LsaAddAccountRights(IntPtr policy, byte[] sid, LSA_UNICODE_STRING[] rights, uint count);
    [DllImport("advapi32.dll")]
    static extern uint LsaClose(IntPtr policy);
    [DllImport("advapi32.dll")]
    static extern int LsaNtStatusToWinError(uint status);

    // Grants a user right (SeServiceLogonRight: "Log on as a service") to an account, as services.msc does.
    public static void Grant(string account, string right) {
        SecurityIdentifier sid = (SecurityIdentifier)new NTAccount(account).Translate(typeof(SecurityIdentifier));
        byte[] binary = new byte[sid.BinaryLength];
        sid.GetBinaryForm(binary, 0);
        LSA_OBJECT_ATTRIBUTES attributes = new LSA_OBJECT_ATTRIBUTES();
        IntPtr policy;
        uint status = LsaOpenPolicy(IntPtr.Zero, ref attributes, 0x00000810, out policy);  // CREATE_ACCOUNT | LOOKUP_NAMES
        if (status != 0) { throw new Win32Exception(LsaNtStatusToWinError(status)); }
        LSA_UNICODE_STRING name = new LSA_UNICODE_STRING();
        name.Buffer = Marshal.StringToHGlobalUni(right);
        name.Length = (ushort)(right.Length * 2);
        name.MaximumLength = (ushort)(name.Length + 2);
        try {
            status = LsaAddAccountRights(policy, binary, new LSA_UNICODE_STRING[] { name }, 1);
            if (status != 0) { throw new Win32Exception(LsaNtStatusToWinError(status)); }
        }
        finally {
            Marshal.FreeHGlobal(name.Buffer);
            LsaClose(policy);
        }
    }
}
'@

function Set-ServiceAccount($Service) {
    # The log-on account of one service, set on every run: a service added later gets it too.
    $account = $Service.account
    $current = (Get-CimInstance -ClassName Win32_Service -Filter "Name='$($Service.id)'").StartName
    if ($current -eq $account.name -and -not ($account.needs_password -and $ServiceAccountCredential)) { return }
    $password = ''
    if ($account.needs_password) {
        if (-not $script:credential) {
            $script:credential = $ServiceAccountCredential
            if (-not $script:credential) {
                $script:credential = Get-Credential -UserName $account.name -Message "The password of $($account.name), the account the transcriber services log on as"
            }
            if (-not $script:credential) { throw "No password given for $($account.name): pass -ServiceAccountCredential (Get-Credential)." }
        }
        $password = $script:credential.GetNetworkCredential().Password
    }
    if ($account.needs_logon_right) {
        if (-not ('TranscriberLsa' -as [type])) { Add-Type -TypeDefinition $LsaSource }
        [TranscriberLsa]::Grant($account.name, 'SeServiceLogonRight')
    }
    Write-Host "    $($Service.id) logs on as $($account.name)"
    $service = Get-CimInstance -ClassName Win32_Service -Filter "Name='$($Service.id)'"
    $result = Invoke-CimMethod -InputObject $service -MethodName Change -Arguments @{ StartName = $account.name; StartPassword = $password }
    if ($result.ReturnValue -ne 0) {
        throw "Could not make $($Service.id) log on as $($account.name): Win32_Service.Change returned $($result.ReturnValue) (22: no such account; 8: a wrong password, among others)."
    }
}

function Register-TranscriberService($Service) {
    $exe = Join-Path $servicesDir "$($Service.id).exe"
    for ($attempt = 1; ; $attempt++) {
        try {
            Copy-Item -LiteralPath $winswExe -Destination $exe -Force
            break
        }
        catch {
            if ($attempt -ge 10) { throw }
            Start-Sleep -Seconds 1  # a wrapper that has just stopped may hold its exe for a moment
        }
    }
    [System.IO.File]::WriteAllText((Join-Path $servicesDir "$($Service.id).xml"), $Service.xml, $Utf8)

    $existing = Get-CimInstance -ClassName Win32_Service -Filter "Name='$($Service.id)'"
    if (-not $existing) {
        Write-Host "    registering $($Service.id)"
        $null = Invoke-Program -FilePath $exe -ArgumentList @('install') -FailureMessage "WinSW could not register $($Service.id)"
    }
    else {
        $registeredExe = $existing.PathName.Trim().Trim('"')
        if ($registeredExe -ne $exe) {
            throw "$($Service.id) is already registered by another installation ($registeredExe). Remove it with that installation's uninstall.ps1, then re-run."
        }
        # WinSW applies these only when it registers a service; refreshed here instead of re-registering.
        Write-Host "    updating $($Service.id)"
        $null = Invoke-Program -FilePath 'sc.exe' -ArgumentList @('config', $Service.id, 'start=', 'delayed-auto', 'DisplayName=', ($Service.id -replace '-', ' ')) -Quiet -FailureMessage "sc.exe config $($Service.id) failed"
        $null = Invoke-Program -FilePath 'sc.exe' -ArgumentList @('description', $Service.id, $Service.description) -Quiet -FailureMessage "sc.exe description $($Service.id) failed"
        $null = Invoke-Program -FilePath 'sc.exe' -ArgumentList @('failure', $Service.id, 'reset=', '3600', 'actions=', 'restart/10000/restart/30000/restart/60000') -Quiet -FailureMessage "sc.exe failure $($Service.id) failed"
    }
    Set-ServiceAccount $Service
}

# ------------------------------------------------------------------ options

if (-not [Environment]::Is64BitOperatingSystem) { throw 'transcriber needs 64-bit Windows.' }
$InstallDir = Get-FullPath $InstallDir
if (-not $Source) { $Source = Split-Path -Parent (Split-Path -Parent $PSScriptRoot) }
$Source = Get-FullPath $Source
if (-not (Test-Path -LiteralPath (Join-Path $Source 'pyproject.toml'))) {
    throw "$Source is not the transcriber source folder (no pyproject.toml): pass -Source."
}
$servicesDir = Join-Path $InstallDir 'services'
$logsDir = Join-Path $InstallDir 'logs'
$dataDir = Join-Path $InstallDir 'data'
$envFile = Join-Path $InstallDir '.env'
$venvDir = Join-Path $InstallDir 'venv'
$venvPython = Join-Path $venvDir 'Scripts\python.exe'
$transcriberExe = Join-Path $venvDir 'Scripts\transcriber.exe'
$optionsFile = Join-Path $servicesDir 'install-options.json'
$metricsWhere = '127.0.0.1:9808'

# Only the options given on this command line; the others come from the last run, then the defaults.
$given = @{}
foreach ($name in @('WorkerPool', 'WorkerConcurrency', 'NoWorker', 'NoBeat', 'NoWatcher', 'WithFlower', 'FlowerPort', 'WithMetrics', 'Wheelhouse', 'ServiceAccount')) {
    if (-not $PSBoundParameters.ContainsKey($name)) { continue }
    $value = $PSBoundParameters[$name]
    if ($value -is [System.Management.Automation.SwitchParameter]) { $value = $value.IsPresent }
    $given[$name] = $value
}
if ($given.ContainsKey('Wheelhouse') -and $given['Wheelhouse']) { $given['Wheelhouse'] = Get-FullPath $given['Wheelhouse'] }
if (-not $PSBoundParameters.ContainsKey('ServiceAccount')) {
    # An installation from before -ServiceAccount, whose account was set by hand (services.msc): keep it.
    $remembered = (Test-Path -LiteralPath $optionsFile) -and [bool]((Get-Content -LiteralPath $optionsFile -Raw | ConvertFrom-Json).PSObject.Properties['ServiceAccount'])
    if (-not $remembered) {
        $byHand = @(Get-CimInstance -ClassName Win32_Service -Filter "Name LIKE 'transcriber-%'" | Where-Object { $_.StartName -and $_.StartName -ne 'LocalSystem' } | Select-Object -First 1)
        if ($byHand.Count -gt 0) {
            $given['ServiceAccount'] = $(if ($byHand[0].StartName -like 'NT SERVICE\*') { 'Virtual' } else { $byHand[0].StartName })
            Write-Host "keeping the log-on account set by hand on $($byHand[0].Name): $($byHand[0].StartName) (-ServiceAccount changes it)"
        }
    }
}

Write-Host "transcriber install: $InstallDir from $Source"
Write-Step 'Python'
# winsvc.py runs with the Python the venv is built with, never with the venv's own (rebuilt below if need be).
$planPython = Find-Python $Python
$plan = Get-Plan
$opt = $plan.options

# ------------------------------------------------------------------ stop what runs

Write-Step 'Services'
$registered = @($plan.services | Where-Object { Get-Service -Name $_.id -ErrorAction SilentlyContinue })
foreach ($service in $registered) {
    if ((Get-Service -Name $service.id).Status -ne 'Stopped') {
        # A running worker hands its recording back to the queue (progress kept); up to 90 s.
        Write-Host "    stopping $($service.id) for the upgrade"
        Stop-Service -Name $service.id
    }
}
if ($registered.Count -eq 0) { Write-Host '    none registered yet' }
$wrapperLogs = @($plan.services | ForEach-Object { Join-Path $logsDir "$($_.id).wrapper.log" } | Where-Object { Test-Path -LiteralPath $_ })
if ($wrapperLogs.Count -gt 0) { $null = Invoke-Winsvc -ArgumentList (@('rotate') + $wrapperLogs) }  # WinSW 2 never rolls it

# ------------------------------------------------------------------ the folder, Python and the package

Write-Step "Install folder $InstallDir"
if (-not (Test-Path -LiteralPath $InstallDir)) { $null = New-Item -ItemType Directory -Path $InstallDir }
# Closed before anything runs from it: code that runs as the services' account must not be changeable by others.
Set-InstallAcl $plan.acl_before
Write-Host '    owned by Administrators; full control for Administrators and SYSTEM only'
if ($plan.rebuild_venv -and (Test-Path -LiteralPath $venvDir)) {
    # Made by an earlier install.ps1, in a folder whose ACL let any user change it: not to be trusted.
    Write-Host "    removing $venvDir (made before the folder's ACL was set; it is rebuilt now)"
    Remove-Item -LiteralPath $venvDir -Recurse -Force
}
foreach ($dir in @($servicesDir, $logsDir, $dataDir)) {
    if (-not (Test-Path -LiteralPath $dir)) { $null = New-Item -ItemType Directory -Path $dir }
}

Write-Step 'Virtual environment'
if (Test-Path -LiteralPath $venvPython) {
    Write-Host "    reusing $venvDir (delete that folder to rebuild it with another Python)"
}
else {
    $null = Invoke-Program -FilePath $planPython -ArgumentList @('-m', 'venv', $venvDir) -FailureMessage 'Creating the virtual environment failed'
}

Write-Step "Installing transcriber from $Source"
$pipArguments = @('-m', 'pip', 'install', '--upgrade', '--disable-pip-version-check')
if ($opt.Wheelhouse) { $pipArguments += @('--no-index', '--find-links', $opt.Wheelhouse) }
$pipArguments += $Source
$null = Invoke-Program -FilePath $venvPython -ArgumentList $pipArguments -FailureMessage 'pip install failed (see above)'
if (-not (Test-Path -LiteralPath $transcriberExe)) { throw "pip did not create $transcriberExe" }

# ------------------------------------------------------------------ settings

Write-Step 'Settings'
if (Test-Path -LiteralPath $envFile) {
    Write-Host "    keeping $envFile (an existing .env is never overwritten; its ACL is set below)"
}
else {
    # Absolute paths, so that operator commands work from any folder and every service agrees.
    $paths = @{
        DATA_DIR          = $dataDir
        WATCH_DIR         = Join-Path $InstallDir 'inbox'
        OUTPUT_DIR        = Join-Path $InstallDir 'transcripts'
        WHISPER_MODEL_DIR = Join-Path $InstallDir 'models'
    }
    $lines = foreach ($line in (Get-Content -LiteralPath (Join-Path $Source '.env.example') -Encoding UTF8)) {
        if ($line -match '^([A-Z_]+)=' -and $paths.ContainsKey($Matches[1])) { "$($Matches[1])=$($paths[$Matches[1]])" } else { $line }
    }
    [System.IO.File]::WriteAllLines($envFile, [string[]]$lines, $Utf8)
    foreach ($dir in $paths.Values) {
        if (-not (Test-Path -LiteralPath $dir)) { $null = New-Item -ItemType Directory -Path $dir }
    }
    Write-Host "    wrote $envFile from .env.example"
}
$flowerAuthSet = [bool](Select-String -LiteralPath $envFile -Pattern '^\s*FLOWER_BASIC_AUTH\s*=\s*\S' -Quiet)
# Where `transcriber metrics` listens: read by the service from .env, shown here in its description.
$metricsAddress = Get-EnvSetting -Name 'METRICS_ADDRESS' -Default '127.0.0.1'
$metricsPort = Get-EnvSetting -Name 'METRICS_PORT' -Default '9808'
$metricsWhere = "${metricsAddress}:$metricsPort"
$dataFolders = @('WATCH_DIR', 'OUTPUT_DIR', 'WHISPER_MODEL_DIR') | ForEach-Object { Get-EnvSetting -Name $_ -Default '' } | Where-Object { $_ }

Write-Step 'Database schema (transcriber db upgrade)'
$savedEnvFile = $env:TRANSCRIBER_ENV_FILE
$env:TRANSCRIBER_ENV_FILE = $envFile
Push-Location -LiteralPath $InstallDir  # the services' working folder
try {
    $dbReady = (Invoke-Program -FilePath $transcriberExe -ArgumentList @('db', 'upgrade')).ExitCode -eq 0
}
finally {
    Pop-Location
    $env:TRANSCRIBER_ENV_FILE = $savedEnvFile
}
if (-not $dbReady) {
    Write-Warning ("The database is not migrated yet (see the message above): DATABASE_URL in $envFile most likely " +
        'still points at a server that is not there. Set DATABASE_URL and CELERY_BROKER_URL (or leave both empty ' +
        "for the single-server default), then run: cd '$InstallDir'; .\venv\Scripts\transcriber.exe db upgrade" +
        ' (or re-run this script). Continuing with the services.')
}

# ------------------------------------------------------------------ services

Write-Step 'Registering services (WinSW)'
$plan = Get-Plan -DataFolders $dataFolders  # again, now that .env says where the folders are
$winswExe = Join-Path $servicesDir "WinSW-$($plan.winsw.version)-x64.exe"
Get-WinSW -LocalCopy $WinSWPath -Destination $winswExe
foreach ($service in $plan.services) {
    if ($service.wanted) {
        Register-TranscriberService $service
    }
    elseif (Get-Service -Name $service.id -ErrorAction SilentlyContinue) {
        & (Join-Path $PSScriptRoot 'uninstall.ps1') -InstallDir $InstallDir -Service $service.role
    }
}

Write-Step 'Access'
Set-InstallAcl $plan.acl
$accounts = @($plan.services | Where-Object { $_.wanted } | ForEach-Object { $_.account.name } | Select-Object -Unique)
Write-Host "    ${InstallDir}: full control for Administrators and SYSTEM; read and run for $($accounts -join ', '); change on data, logs, models"
Write-Host "    ${envFile}: readable by Administrators, SYSTEM and $($accounts -join ', ') only"
foreach ($folder in $dataFolders) {
    if (-not $folder.StartsWith($InstallDir + '\', [System.StringComparison]::OrdinalIgnoreCase)) {
        Write-Host "    $folder is outside ${InstallDir}: give $($accounts -join ', ') access to it yourself (docs\windows.md, Network shares)"
    }
}
[System.IO.File]::WriteAllText($optionsFile, ($plan.save | ConvertTo-Json), $Utf8)

# ------------------------------------------------------------------ next steps

$names = @($plan.services | Where-Object { $_.wanted } | ForEach-Object { $_.id })
$restart = Join-Path $PSScriptRoot 'restart.ps1'
Write-Step 'Done'
Write-Host "Installed in $InstallDir. Services (stopped; they start at boot and restart after a failure):"
Write-Host "    $($names -join ', ')"
foreach ($note in @($plan.notes)) { Write-Host "    $note" }
if ($opt.WithFlower -and -not $flowerAuthSet) {
    Write-Warning "transcriber-flower will not start until FLOWER_BASIC_AUTH=user:password is set in $envFile."
}
Write-Host ''
Write-Host 'Next steps:'
Write-Host "  1. Edit the settings: notepad '$envFile'"
Write-Host '     DATABASE_URL, CELERY_BROKER_URL (both empty = single server, no Postgres/Redis), WATCH_DIR, OUTPUT_DIR'
if ($opt.WithFlower) { Write-Host '     and FLOWER_BASIC_AUTH=user:password' }
if ($dbReady) {
    Write-Host "  2. Check them:  cd '$InstallDir'; .\venv\Scripts\transcriber.exe doctor"
}
else {
    Write-Host "  2. Migrate and check:  cd '$InstallDir'; .\venv\Scripts\transcriber.exe db upgrade; .\venv\Scripts\transcriber.exe doctor"
}
Write-Host "  3. Start the services:  & '$restart'   (it then shows what each service found under its own account)"
if ($opt.WithFlower) { Write-Host "  4. Flower: http://127.0.0.1:$($opt.FlowerPort) on this server (user and password from FLOWER_BASIC_AUTH)" }
if ($opt.WithMetrics) {
    Write-Host "  Metrics: http://${metricsAddress}:$metricsPort/metrics (Prometheus config, alert rules and a Grafana dashboard: $(Join-Path $Source 'deploy'))"
    if ($metricsAddress -eq '127.0.0.1' -or $metricsAddress -eq 'localhost') {
        Write-Host '     A Prometheus on another machine: set METRICS_ADDRESS=0.0.0.0 in .env, restart transcriber-metrics and allow'
        Write-Host "     only that machine in: New-NetFirewallRule -DisplayName 'transcriber metrics' -Direction Inbound -Protocol TCP -LocalPort $metricsPort -RemoteAddress <prometheus-ip> -Action Allow"
    }
}
Write-Host "Logs: $logsDir\<service>.err.log    Guide: $(Join-Path $Source 'docs\windows.md')"
