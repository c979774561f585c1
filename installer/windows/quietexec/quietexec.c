/*
 * A deferred custom action for the wixl-built MSI: runs one command with no window and copies
 * every line it prints into the MSI log, as the WiX 3 MSI's WixQuietExec64 does (wixl has no
 * WixCA). Its CustomActionData is "TOKEN|COMMAND LINE": the token (which may be empty) goes to
 * the command in the TUTELA_ENROL_TOKEN environment variable, never on its command line, so
 * that neither the log nor a process listing shows it.
 *
 * It always returns success: the command itself reports what went wrong in the log and leaves
 * the machine in a state it names (an agent installed but not enrolled, its service stopped),
 * rather than failing the whole install.
 *
 * Built by the MSI builds (build-msi.sh with mingw-w64, build-msi.cmd with MSVC's cl):
 *   x86_64-w64-mingw32-gcc -shared -O2 -s -o quietexec.dll quietexec.c quietexec.def -lmsi
 */
#include <windows.h>
#include <msi.h>
#include <msiquery.h>
#include <stdio.h>
#include <stdlib.h>

#define TOKEN_VARIABLE L"TUTELA_ENROL_TOKEN"

/* One line into the MSI log; "[1]" keeps brackets in the line from being read as properties. */
static void log_line(MSIHANDLE install, const wchar_t *line)
{
    MSIHANDLE record = MsiCreateRecord(1);
    if (!record)
        return;
    MsiRecordSetStringW(record, 0, L"QuietExec: [1]");
    MsiRecordSetStringW(record, 1, line);
    MsiProcessMessage(install, INSTALLMESSAGE_INFO, record);
    MsiCloseHandle(record);
}

/* The command's output, in UTF-8 lines, into the log. */
static void log_output(MSIHANDLE install, HANDLE pipe)
{
    char buffer[4096];
    size_t used = 0;
    for (;;) {
        DWORD got = 0;
        BOOL ok = ReadFile(pipe, buffer + used, (DWORD)(sizeof buffer - 1 - used), &got, NULL);
        used += got;
        int finished = !ok || got == 0;
        size_t start = 0;
        for (size_t i = 0; i < used; i++) {
            if (buffer[i] == '\n' || (finished && i + 1 == used) || (i + 1 == sizeof buffer - 1)) {
                size_t end = buffer[i] == '\n' ? i : i + 1;
                while (end > start && (buffer[end - 1] == '\r' || buffer[end - 1] == '\n'))
                    end--;
                if (end > start) {
                    wchar_t wide[4096];
                    int n = MultiByteToWideChar(CP_UTF8, 0, buffer + start, (int)(end - start),
                                                wide, 4095);
                    wide[n > 0 ? n : 0] = 0;
                    log_line(install, wide);
                }
                start = i + 1;
            }
        }
        memmove(buffer, buffer + start, used - start);
        used -= start;
        if (finished)
            return;
    }
}

UINT __stdcall QuietExec(MSIHANDLE install)
{
    DWORD size = 0;
    wchar_t empty[1] = L"";
    MsiGetPropertyW(install, L"CustomActionData", empty, &size);
    wchar_t *data = calloc((size_t)size + 1, sizeof(wchar_t));
    if (!data)
        return ERROR_SUCCESS;
    size += 1;
    MsiGetPropertyW(install, L"CustomActionData", data, &size);
    wchar_t *command = wcschr(data, L'|');
    if (!command) {
        log_line(install, L"no command given (CustomActionData is TOKEN|COMMAND)");
        free(data);
        return ERROR_SUCCESS;
    }
    *command++ = 0;
    SetEnvironmentVariableW(TOKEN_VARIABLE, data[0] ? data : NULL);
    SecureZeroMemory(data, (command - data) * sizeof(wchar_t));

    SECURITY_ATTRIBUTES inherit = {sizeof inherit, NULL, TRUE};
    HANDLE read_end = NULL, write_end = NULL;
    if (!CreatePipe(&read_end, &write_end, &inherit, 0)) {
        log_line(install, L"cannot make a pipe for the command's output");
        goto done;
    }
    SetHandleInformation(read_end, HANDLE_FLAG_INHERIT, 0);
    STARTUPINFOW startup;
    ZeroMemory(&startup, sizeof startup);
    startup.cb = sizeof startup;
    startup.dwFlags = STARTF_USESTDHANDLES;
    startup.hStdInput = NULL;
    startup.hStdOutput = write_end;
    startup.hStdError = write_end;
    PROCESS_INFORMATION process;
    ZeroMemory(&process, sizeof process);
    if (!CreateProcessW(NULL, command, NULL, NULL, TRUE, CREATE_NO_WINDOW, NULL, NULL, &startup,
                        &process)) {
        wchar_t line[128];
        swprintf(line, 128, L"cannot start the command (error %lu)", GetLastError());
        log_line(install, line);
        CloseHandle(write_end);
        CloseHandle(read_end);
        goto done;
    }
    CloseHandle(write_end);
    log_output(install, read_end);
    CloseHandle(read_end);
    WaitForSingleObject(process.hProcess, INFINITE);
    DWORD code = 0;
    GetExitCodeProcess(process.hProcess, &code);
    CloseHandle(process.hThread);
    CloseHandle(process.hProcess);
    wchar_t line[64];
    swprintf(line, 64, L"the command exited with code %lu", code);
    log_line(install, line);
done:
    SetEnvironmentVariableW(TOKEN_VARIABLE, NULL);
    free(data);
    return ERROR_SUCCESS;
}
