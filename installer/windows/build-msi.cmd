@echo off
rem Builds target\wix\tutela-agent-VERSION-x64.msi on Windows with the WiX Toolset 3.x
rem (candle and light on PATH), a Rust toolchain for x86_64-pc-windows-msvc and MSVC's C
rem compiler (cl), which builds the QuietExec custom action. Run from the repository root
rem in a "x64 Native Tools Command Prompt": installer\windows\build-msi.cmd
rem On Linux, installer/windows/build-msi.sh builds the same MSI from the same source with wixl.
setlocal
for /f "tokens=3 delims= " %%v in ('findstr /r /c:"^version = " Cargo.toml') do set VERSION=%%~v
if "%VERSION%"=="" (echo build-msi: no version in Cargo.toml & exit /b 1)
cargo build --release --locked -p tutela-agent --target x86_64-pc-windows-msvc || exit /b 1
if not exist target\wix mkdir target\wix
cl /nologo /O2 /LD /Fotarget\wix\ /Fetarget\wix\quietexec.dll ^
  installer\windows\quietexec\quietexec.c msi.lib ^
  /link /DEF:installer\windows\quietexec\quietexec.def || exit /b 1
candle -nologo -arch x64 -dVersion=%VERSION% ^
  -dAgentExe=target\x86_64-pc-windows-msvc\release\tutela-agent.exe ^
  -dQuietExecDll=target\wix\quietexec.dll ^
  installer\windows\tutela-agent.wxs -out target\wix\tutela-agent.wixobj || exit /b 1
light -nologo target\wix\tutela-agent.wixobj ^
  -out target\wix\tutela-agent-%VERSION%-x64.msi || exit /b 1
echo target\wix\tutela-agent-%VERSION%-x64.msi
